"""Evaluation pairs: made from a dataset under the benchmark protocol (SPEC section 2), and read back.

A pairs folder holds ``blurry/<id>.png`` (with ``<id>.json``, the degradation recipe),
``sharp/<id>.png`` and, where the dataset has masks, ``masks/<id>.png`` (5-group labels 0..4).
Only held-out faces are used by default (the test split of :func:`smfd.data.select`), so no
training run has seen them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from smfd import data
from smfd.batch import check_removable
from smfd.blur_files import recipe_record, write_recipe
from smfd.degrade import PipelineOptions
from smfd.errors import InputError
from smfd.images import check_rgb, list_images, read_groups, read_image, write_atomically, write_png


@dataclass(frozen=True)
class Pair:
    id: str
    blurry: Path
    sharp: Path
    mask: Path | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        blurry, sharp = check_rgb(read_image(self.blurry), str(self.blurry)), read_image(self.sharp)
        if blurry.shape != sharp.shape:
            raise InputError(f"{self.blurry}: size {blurry.shape[1]}x{blurry.shape[0]} differs from "
                             f"{self.sharp} ({sharp.shape[1]}x{sharp.shape[0]})")
        mask = None
        if self.mask is not None:
            mask = read_groups(self.mask)
            if mask.shape != blurry.shape[:2]:
                raise InputError(f"{self.mask}: mask size differs from {self.blurry}")
        return blurry, sharp, mask


def pair_records(dataset: str | Path, split: str = "test") -> list[data.FaceRecord]:
    """The faces ``make_pairs`` degrades: the dataset's held-out faces ('test') or all of them."""
    records = data.open_dataset(dataset)
    if split == "test":
        records = data.select(records, "test")
    elif split != "all":
        raise InputError(f"split must be 'test' or 'all', got {split!r}")
    if not records:
        raise InputError(f"{dataset}: no held-out (test split) faces; use --split all for a dataset "
                         "that no training run has seen")
    return records


def make_pairs(dataset: str | Path, out: str | Path, limit: int | None = None, seed: int = 0,
               split: str = "test", overwrite: bool = False) -> int:
    """Degrade the dataset's ``split`` faces ('test' or 'all') into ``out``; returns the count.
    pairs.json is written last: a folder without it is an interrupted run, replaced only with
    ``overwrite``, as are complete pairs."""
    records = pair_records(dataset, split)
    records = records[:limit] if limit else records
    data.check_files(records)  # a bad file named before earlier pairs are removed, not halfway through
    out = Path(out)
    subs = [out / sub for sub in ("blurry", "sharp", "masks")]
    if any(sub.is_dir() for sub in subs):  # e.g. --out the dataset folder: its masks/ would be replaced
        files = (p for r in data.open_dataset(dataset) for p in (r.image, r.mask, *(f for _, f in r.parts)) if p)
        check_removable(subs, files, f"a file of the dataset {dataset}")
    if not overwrite:
        if (out / "pairs.json").exists():
            raise InputError(f"{out / 'pairs.json'}: pairs made earlier; pass --overwrite to make them again "
                             "or choose another --out")
        for sub in subs:
            if sub.is_dir() and any(sub.iterdir()):
                raise InputError(f"{sub}: not empty and no pairs.json beside it (an interrupted run?); pass "
                                 "--overwrite to make the pairs again or choose another --out")
    # Made aside and moved into place once every face is made: a face that fails halfway (a mask
    # value out of range shows only when it is read) leaves the earlier pairs as they were.
    making = out / ".pairs-in-the-making"
    if making.is_dir():  # a run killed outright left it
        shutil.rmtree(making)
    try:
        for record in tqdm(records, desc="pairs", unit="face"):
            blurry, sharp, groups, recipe = data.benchmark_pair(record, seed)
            write_png(making / "blurry" / f"{record.id}.png", blurry)
            # its seed is the benchmark's, drawn per face: not what `smfd blur --seed` would draw
            drawn = {"stream": f"smfd.data.eval_rng({seed}, {record.id!r})", "resized_to": blurry.shape[0]}
            write_recipe(making / "blurry" / f"{record.id}.json",
                         {**recipe_record(recipe, PipelineOptions(), seed, str(record.image)), **drawn})
            write_png(making / "sharp" / f"{record.id}.png", sharp)
            if groups is not None:
                write_png(making / "masks" / f"{record.id}.png", groups)
    except BaseException:
        shutil.rmtree(making, ignore_errors=True)
        raise
    (out / "pairs.json").unlink(missing_ok=True)
    for sub in subs:
        if sub.is_dir():
            shutil.rmtree(sub)
        if (making / sub.name).is_dir():
            (making / sub.name).rename(sub)
    making.rmdir()
    made = json.dumps({"dataset": str(Path(dataset).resolve()), "split": split, "faces": len(records),
                       "seed": seed, "protocol": "thesis pipeline on the 512x512 source, blurry and sharp "
                                                 "resized to 256x256 with cv2.INTER_AREA (SPEC section 2)"},
                      indent=2) + "\n"
    write_atomically(out / "pairs.json", lambda tmp: tmp.write_text(made), ".json")  # the marker: whole or none
    return len(records)


def find_pairs(blurry_dir: str | Path, sharp_dir: str | Path, masks_dir: str | Path | None = None) -> list[Pair]:
    """Match ``blurry_dir/<stem>.*`` with ``sharp_dir/<stem>.*`` (and ``masks_dir/<stem>.png``)."""
    blurry_dir, sharp_dir = Path(blurry_dir), Path(sharp_dir)
    for folder in (blurry_dir, sharp_dir, *([Path(masks_dir)] if masks_dir else [])):
        if not folder.is_dir():
            raise InputError(f"{folder}: {'not a folder' if folder.exists() else 'folder not found'}")
    sharp = _by_stem(list_images(sharp_dir))
    pairs = []
    for b in _by_stem(list_images(blurry_dir)).values():
        if b.stem not in sharp:
            raise InputError(f"{b}: no sharp image {b.stem}.* in {sharp_dir}")
        mask = None
        if masks_dir:
            mask = Path(masks_dir) / f"{b.stem}.png"
            if not mask.is_file():
                raise InputError(f"{mask}: no mask for {b.name} in the masks folder")
        pairs.append(Pair(b.stem, b, sharp[b.stem], mask))
    return pairs


def _by_stem(files: list[Path]) -> dict[str, Path]:
    """stem -> file; two files of one stem (a.png, a.jpg) would be one face counted twice, or one
    of them silently dropped: refused, naming both."""
    found: dict[str, Path] = {}
    for path in files:
        if path.stem in found:
            raise InputError(f"{path}: same name as {found[path.stem].name}; which is the face {path.stem}?")
        found[path.stem] = path
    return found
