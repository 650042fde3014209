"""Picture of the held-out faces whose identity an older model changed most, beside a newer model.

    .venv/bin/python scripts/identity_figure.py BEFORE.csv --before DIR --after DIR \
        [--faces 6] [--out docs/identity_before_after.png]

BEFORE.csv is the ``--per-face`` output of ``scripts/benchmark_model.py --weights DIR`` for the
older weights: the faces whose descriptor distance to the sharp face grew most against the blurry
input's are shown (sharp, blurry, the generated mask, each model's restoration with generated
masks), every image titled with its dlib descriptor distance to the sharp face (below 0.6: the
same person). The faces are degraded under the benchmark protocol (SPEC section 2) with --seed and
no JPEG stage; a CSV whose blurry faces were degraded otherwise is refused.
"""

import sys
from pathlib import Path

import numpy as np

from eval.per_face import INPUTS, check_same_inputs, read
from smfd import data, labels, metrics
from smfd.batch import check_replaced_file
from smfd.cli import int_from, run_reported, script_parser
from smfd.errors import InputError
from smfd.identity import geometry
from smfd.images import write_figure
from smfd.paths import benchmark_data
from smfd.restorer import Restorer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("per_face", help="--per-face CSV of benchmark_model.py for the older weights")
    parser.add_argument("--before", required=True, help="weights folder of the older model")
    parser.add_argument("--after", default=None, help="weights folder of the newer model (default: shipped)")
    parser.add_argument("--data", default=str(benchmark_data()),
                        help="the faces the CSV was made on (default: the benchmark's, celebamask_mini)")
    parser.add_argument("--faces", type=int_from(1), default=6,
                        help="how many faces to show: those the older weights moved furthest from the "
                             "person (default 6)")
    parser.add_argument("--seed", type=int_from(0), default=0, help="the benchmark's seed")
    parser.add_argument("--out", default=str(ROOT / "docs" / "identity_before_after.png"),
                        help="the PNG written (default: docs/identity_before_after.png of this project)")
    args = parser.parse_args()

    # before the faces are restored, not after
    check_replaced_file(args.out, "--out", (".png", ".pdf", ".svg"), [Path(args.per_face)])
    for weights in (args.before, args.after):
        Restorer.check_options(weights, "cpu")
    faces = read(args.per_face, ("generated_id_dist", *INPUTS))
    chosen = sorted(faces, key=lambda f: faces[f]["input_id_dist"] - faces[f]["generated_id_dist"])[: args.faces]
    records = {r.id: r for r in data.open_dataset(args.data)}
    unknown = [f for f in chosen if f not in records]
    if unknown:
        raise InputError(f"{args.per_face}: face {unknown[0]} is not in {args.data}")
    pairs = {face_id: data.benchmark_pair(records[face_id], args.seed)[:2] for face_id in chosen}
    # The faces shown must be the faces the CSV ranked: the same seed, no JPEG stage, the same data.
    here = {}
    for face_id, (blurry, sharp) in pairs.items():
        here[face_id] = {"input_psnr": metrics.psnr(blurry, sharp),
                         "input_id_dist": geometry().distances([blurry], sharp)[0]}
    check_same_inputs(here, faces, (f"these faces (--seed {args.seed}, no JPEG)", args.per_face))
    before = Restorer.from_pretrained(args.before, "cpu", engine="pytorch")
    after = Restorer.from_pretrained(args.after, "cpu", engine="pytorch")
    table = []
    for face_id, (blurry, sharp) in pairs.items():
        old, new = before.restore_face(blurry), after.restore_face(blurry)
        d = [here[face_id]["input_id_dist"], *geometry().distances([old.image, new.image], sharp)]
        print(f"{face_id[:8]}: blurry {d[0]:.3f}, before {d[1]:.3f}, after {d[2]:.3f}")
        table.append([("sharp", sharp), (f"blurry {d[0]:.2f}", blurry),
                      ("generated mask", labels.colorize(old.groups)),
                      (f"before {d[1]:.2f}", old.image), (f"after {d[2]:.2f}", new.image)])
    draw(args.out, chosen, table)
    print(f"wrote {args.out}")


def draw(path: str, ids: list[str], table: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(table), 5, figsize=(10, 2.15 * len(table)), squeeze=False)
    for r, cells in enumerate(table):
        for c, (title, image) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(np.asarray(image))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
        axes[r, 0].set_ylabel(ids[r][:8], fontsize=8)
    fig.suptitle("Faces whose identity the older model changed most (dlib descriptor distance to the sharp "
                 "face; < 0.6 = same person)", fontsize=9)
    fig.tight_layout()
    write_figure(path, fig, 80)


if __name__ == "__main__":
    sys.exit(run_reported(main))
