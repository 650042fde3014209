"""Learning curves of training runs: the validation score of every epoch, from each run's log.csv.

    .venv/bin/python scripts/plot_training.py runs/mask runs/smfd_gt runs/smfd_mix --out docs/learning_curves.png

One panel per run: the validation Dice (mask generator) or PSNR (SMFD-UNet) against the hours of
training, with dotted lines where the learning rate dropped.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from smfd.batch import check_replaced_file  # noqa: E402
from smfd.cli import run_reported, script_parser  # noqa: E402
from smfd.errors import InputError  # noqa: E402
from smfd.images import write_figure  # noqa: E402


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (each with log.csv)")
    parser.add_argument("--out", default="learning_curves.png", help="the figure written (.png, .pdf or .svg)")
    args = parser.parse_args()
    check_replaced_file(args.out, "--out", (".png", ".pdf", ".svg"))
    logs = [(run, read_log(Path(run) / "log.csv")) for run in args.runs]  # every log checked before drawing
    fig, axes = plt.subplots(1, len(args.runs), figsize=(4.2 * len(args.runs), 3.2), squeeze=False)
    for ax, (run, rows) in zip(axes[0], logs):
        score = "dice" if "dice" in rows[0] else "psnr"
        hours, total = [], 0.0
        for r in rows:
            total += r["seconds"] / 3600
            hours.append(total)
        ax.plot(hours, [r[score] for r in rows], marker="o", markersize=3)
        for prev, r, h in zip(rows, rows[1:], hours[1:]):
            if r["lr"] < prev["lr"]:
                ax.axvline(h, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{Path(run).name} ({len(rows)} epochs)")
        ax.set_xlabel("hours of training (wall clock, as log.csv records it)")
        ax.set_ylabel("validation " + ("mean Dice" if score == "dice" else "PSNR (dB)"))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(args.out, fig, 110)
    print(f"wrote {args.out}")


def read_log(path: Path) -> list[dict]:
    """A training run's log.csv (smfd train writes one row per epoch), refused in one line when it
    is missing, empty or not such a log."""
    if not path.is_file():
        raise InputError(f"{path}: no training log (is {path.parent} a run folder of smfd train?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"seconds", "lr"} <= rows[0].keys() or not {"dice", "psnr"} & rows[0].keys():
        raise InputError(f"{path}: {'no epochs logged yet' if not rows else 'not a log of smfd train'}")
    score = "dice" if "dice" in rows[0] else "psnr"
    for n, row in enumerate(rows, 1):  # the columns drawn, as numbers
        for column in ("seconds", "lr", score):
            try:
                row[column] = float(row[column])
            except (TypeError, ValueError):
                raise InputError(f"{path}: row {n}: {column} is not a number ({row[column]!r})") from None
    return rows


if __name__ == "__main__":
    sys.exit(run_reported(main))
