"""``smfd blur``: degrade files and write each result with its recipe beside it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import degrade
from .batch import check_folder, check_free, check_not_inputs, check_some_free, check_some_usable, run_batch
from .errors import InputError
from .images import check_image_file, is_grey, list_images, read_image, write_atomically, write_like


def rng_for_file(seed: int, path: Path) -> np.random.Generator:
    """Each file's stream depends on the seed and its name only, not on the other files."""
    # fsencode: the name's own bytes (a Latin-1 name too); the same as UTF-8 for every UTF-8 name.
    # 256 bits of the name: with a 32-bit checksum, two of 30,000 names shared a recipe by one chance in ten
    digest = hashlib.sha256(os.fsencode(path.name)).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest, "<u4").tolist()])  # the same on every machine


def apply_to_photo(image: np.ndarray, recipe: degrade.Recipe) -> np.ndarray:
    """``recipe`` on an RGB photo as every tool applies it (``smfd blur``, the Blur lab, the API):
    a grey photo is blurred and noised as one channel (noise drawn per channel would tint it),
    which comes back in three equal channels."""
    if not is_grey(image):
        return degrade.apply(image, recipe)
    grey = degrade.apply(np.ascontiguousarray(image[..., 0]), recipe)
    return np.repeat(grey[..., None], 3, axis=2)


def recipe_record(recipe: degrade.Recipe, options: degrade.PipelineOptions | None, seed: int | None,
                  source: str, replayed: str | None = None) -> dict:
    """What is written beside a degraded image: its recipe (``smfd blur --recipe`` replays it),
    the source, and the seed and options it was drawn with, or the recipe file it replays."""
    drawn = {"replayed": replayed} if replayed else {"seed": seed, "options": options.to_dict()}
    return {**recipe.to_dict(), "source": source, **drawn}


def recipe_text(record: dict) -> str:
    """A recipe record (:func:`recipe_record`) as the indented JSON that is written and shown."""
    return json.dumps(record, indent=2)


def write_recipe(path: str | Path, record: dict) -> Path:
    """A recipe record as :func:`recipe_text`, written atomically."""
    text = recipe_text(record) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text), ".json")


def load_recipe(path: str) -> degrade.Recipe:
    """A recipe JSON (e.g. a ``<stem>.json`` written here), or an InputError naming the file."""
    try:
        return degrade.Recipe.load(path)
    except FileNotFoundError:
        raise InputError(f"{path}: recipe file not found") from None
    except (OSError, ValueError) as exc:  # unreadable, not JSON (a ValueError), or bad fields
        raise InputError(f"{path}: not a usable recipe ({exc})") from None


def blur_files(src: str, dst: str, options: degrade.PipelineOptions, seed: int = 0,
               recipe_path: str | None = None, overwrite: bool = False) -> int:
    files = list_images(src)
    fixed = load_recipe(recipe_path) if recipe_path else None
    out = check_folder(dst, "OUT")
    check_not_inputs(files, out, [Path(recipe_path)] if recipe_path else [], (".png", ".json"))
    check_some_free(files, out, overwrite)  # a repeated command: one line, not one per file
    check_some_usable(files, check_image_file)

    def work(path: Path) -> None:
        png, js = out / f"{path.stem}.png", out / f"{path.stem}.json"
        check_free((png, js), overwrite)
        recipe = fixed or degrade.sample_recipe(rng_for_file(seed, path), options)
        degraded = apply_to_photo(read_image(path), recipe)
        # its transparency, a grey photo's one channel and its colour profile kept, as restore keeps
        # them; 8-bit values (a 16-bit file's own low bits would mix the sharp image into the blurry)
        write_like(png, degraded, path, depth=False)
        write_recipe(js, recipe_record(recipe, options, seed, path.name, recipe_path))

    return run_batch(files, "blur", work, "blurred", out)
