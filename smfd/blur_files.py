"""``smfd blur``: degrade files and write each result with its recipe beside it."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import degrade
from .images import InputError, list_images, read_image, write_png


def rng_for_file(seed: int, path: Path) -> np.random.Generator:
    """Each file's stream depends on the seed and its name only, not on the other files."""
    return np.random.default_rng([seed, zlib.crc32(path.name.encode())])


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
    from .cli import BatchErrors, report

    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    files = list_images(src)
    fixed = load_recipe(recipe_path) if recipe_path else None
    out = Path(dst)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a parent is a file, or no permission
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    failed = 0
    sources: dict[str, Path] = {}  # stem -> the input whose result OUT/<stem>.png is, this run
    for path in tqdm(files, desc="blur", unit="image", disable=len(files) < 2):
        try:
            png, js = out / f"{path.stem}.png", out / f"{path.stem}.json"
            if path.stem in sources:  # e.g. a.jpg and a.png: never replace this run's own output
                raise InputError(f"{path}: same name as {sources[path.stem].name}, whose result is {png}")
            if not overwrite and (png.exists() or js.exists()):
                raise InputError(f"{png}: exists already (use --overwrite to replace it)")
            image = read_image(path)
            recipe = fixed or degrade.sample_recipe(rng_for_file(seed, path), options)
            blurry = degrade.apply(image, recipe)
            write_png(png, blurry)
            meta = {**recipe.to_dict(), "source": path.name, "seed": seed, "options": options.to_dict()}
            js.write_text(json.dumps(meta, indent=2) + "\n")
            sources[path.stem] = path
        except InputError as exc:
            report(str(exc))
            failed += 1
    print(f"blurred {len(files) - failed} of {len(files)} images into {out}")
    if failed:
        raise BatchErrors(failed, len(files))
    return len(files) - failed
