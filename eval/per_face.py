"""The ``--per-face`` CSV of ``scripts/benchmark_model.py`` (one row per held-out face), as
``scripts/compare_faces.py`` and ``scripts/identity_figure.py`` read it."""

from __future__ import annotations

import csv
import math

from smfd.errors import InputError

COLUMNS = ("generated_id_dist", "truth_id_dist", "generated_psnr", "truth_psnr")
INPUTS = ("input_psnr", "input_id_dist")  # the blurry faces' own figures: equal where the degradations are


def read(path: str, columns: tuple[str, ...] = COLUMNS) -> dict[str, dict[str, float]]:
    """The faces of a --per-face CSV: id -> the figures of ``columns``, as numbers."""
    try:
        with open(path, newline="") as f:
            listed = [(r["id"], r) for r in csv.DictReader(f)]
    except KeyError:
        raise InputError(f"{path}: not a --per-face CSV of benchmark_model.py (no id column)") from None
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc.__class__.__name__})") from None
    rows = dict(listed)
    if len(rows) < len(listed):  # the second row of a face would silently stand for both
        twice = next(face for face in rows if sum(f == face for f, _ in listed) > 1)
        raise InputError(f"{path}: face {twice} is listed more than once")
    missing = [c for c in columns if rows and c not in next(iter(rows.values()))]
    if not rows or missing:
        raise InputError(f"{path}: not a --per-face CSV of benchmark_model.py "
                         f"({'no faces' if not rows else 'no ' + ', '.join(missing)})")
    figures = {}
    for face, row in rows.items():
        try:
            figures[face] = {c: float(row[c]) for c in columns}
        except (TypeError, ValueError):
            raise InputError(f"{path}: face {face}: a figure is not a number") from None
        odd = [c for c, v in figures[face].items() if not math.isfinite(v)]
        if odd:  # a nan would make every mean nan
            raise InputError(f"{path}: face {face}: {odd[0]} is not a finite number ({row[odd[0]]})")
    return figures


def check_same_inputs(first: dict, second: dict, names: tuple[str, str]) -> None:
    """Refuse two CSVs (read with INPUTS) whose blurry faces differ: runs with another --seed,
    --jpeg or data, whose differences would be the degradations', not the models'."""
    for face in first:
        for column in INPUTS:
            if abs(first[face][column] - second[face][column]) > 1e-6:
                raise InputError(f"{names[0]} and {names[1]}: face {face} was degraded otherwise ({column} "
                                 f"{first[face][column]:.4f} against {second[face][column]:.4f}): compare runs "
                                 "with the same --seed, --jpeg and data")
