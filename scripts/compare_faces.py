"""Face-by-face comparison of two models on the same held-out faces.

    .venv/bin/python scripts/compare_faces.py BEFORE.csv AFTER.csv

Both files are ``--per-face`` outputs of ``scripts/benchmark_model.py`` (same faces, seed and
protocol, other ``--weights`` or ``--colour-sigmas``). For the identity distance and PSNR, with generated and with
ground-truth masks, it prints the mean of AFTER - BEFORE over the faces, its standard error, and
how many faces went down and up: whether a change in the means is more than the faces' noise.
"""

import sys

import numpy as np

from eval.per_face import COLUMNS, INPUTS, check_same_inputs, read
from smfd.cli import run_reported, script_parser
from smfd.errors import InputError


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("before", help="--per-face CSV of the older model")
    parser.add_argument("after", help="--per-face CSV of the newer model")
    args = parser.parse_args()
    before, after = (read(path, COLUMNS + INPUTS) for path in (args.before, args.after))
    if set(before) != set(after):
        raise InputError(f"{args.before} and {args.after} hold different faces: compare runs on the same faces")
    check_same_inputs(before, after, (args.before, args.after))
    ids = sorted(before)
    print(f"{len(ids)} faces, {args.after} - {args.before}\n")
    print("| figure | mean change | standard error | faces down | faces up |")
    print("|---|---|---|---|---|")
    for column in COLUMNS:
        change = np.array([after[i][column] - before[i][column] for i in ids])
        se = change.std(ddof=1) / np.sqrt(len(change)) if len(change) > 1 else float("nan")
        print(f"| {column} | {change.mean():+.4f} | {se:.4f} | {int((change < 0).sum())} | {int((change > 0).sum())} |")


if __name__ == "__main__":
    sys.exit(run_reported(main))
