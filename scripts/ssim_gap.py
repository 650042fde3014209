"""Where the restorations with generated masks lose SSIM against those with the true masks.

    .venv/bin/python scripts/ssim_gap.py [--data DIR] [--weights DIR] [--engine auto|pytorch|openvino]
        [--split test|val] [--faces N] [--seed 0]

The faces and degradations of ``scripts/benchmark_model.py`` (SPEC section 2: held-out test faces
by default, seed 0), each restored through ``Restorer.restore_face`` twice: with the mask generator's
mask and with the true 5-group mask. The SSIM gap (true-mask path minus generated path, the mean of
``smfd.metrics.ssim_map`` over the region SSIM scores) is split by the true group of each pixel: each
group's share of the pixels, its part of the gap (in SSIM), and the part of it on pixels whose group the generator
got wrong. The parts sum to the gap, so it shows whether wrong groups or the restoration of rightly
labelled regions cost the SSIM.
"""

import sys

import numpy as np
from tqdm import tqdm

from smfd import data, labels, metrics
from smfd.cli import add_face_set_options, face_set, run_reported, script_parser
from smfd.restorer import Restorer


def gap_by_group(records, restorer: Restorer, seed: int) -> dict[str, np.ndarray]:
    """Per face (rows) and true group (columns): the share of the scored pixels, the share of the
    SSIM gap, and both on the pixels the generator gives another group; and each path's SSIM."""
    r = metrics.ssim_radius()
    n = len(labels.GROUPS)
    out = {k: np.zeros((len(records), n)) for k in ("pixels", "gap", "wrong_pixels", "wrong_gap")}
    out.update(generated=np.zeros(len(records)), truth=np.zeros(len(records)))
    for i, record in enumerate(tqdm(records, desc="faces", unit="face")):
        blurry, sharp, groups, _ = data.benchmark_pair(record, seed)
        generated = restorer.restore_face(blurry)
        truth = restorer.restore(blurry, groups)
        maps = [metrics.ssim_map(image, sharp)[r:-r, r:-r] for image in (generated.image, truth)]
        out["generated"][i], out["truth"][i] = (m.mean() for m in maps)
        gap = maps[1] - maps[0]
        group, wrong = groups[r:-r, r:-r], (generated.groups != groups)[r:-r, r:-r]
        for g in range(n):
            here = group == g
            out["pixels"][i, g], out["gap"][i, g] = here.mean(), gap[here].sum() / gap.size
            out["wrong_pixels"][i, g] = (here & wrong).mean()
            out["wrong_gap"][i, g] = gap[here & wrong].sum() / gap.size
    return out


def report(scores: dict[str, np.ndarray]) -> None:
    mean = {k: v.mean(0) for k, v in scores.items()}
    print(f"SSIM with the true masks {mean['truth']:.4f}, with generated masks {mean['generated']:.4f}: "
          f"gap {mean['truth'] - mean['generated']:+.4f}")
    print(f"| true group | share of pixels | part of the SSIM gap | of it, where the generator's group is wrong "
          f"(share of pixels) |\n|---|---|---|---|")
    for g, name in enumerate(labels.GROUPS):
        print(f"| {name} | {mean['pixels'][g]:.3f} | {mean['gap'][g]:+.4f} | {mean['wrong_gap'][g]:+.4f} "
              f"({mean['wrong_pixels'][g]:.3f}) |")


def main() -> None:
    parser = script_parser(__doc__)
    add_face_set_options(parser)
    args = parser.parse_args()
    records = face_set(args)
    restorer = Restorer.from_pretrained(args.weights, args.device, args.engine)
    scores = gap_by_group(records, restorer, args.seed)
    print(f"\n{len(records)} {args.split} faces from {args.data}, seed {args.seed}; "
          f"engine {restorer.engine.describe()}\n")
    report(scores)


if __name__ == "__main__":
    sys.exit(run_reported(main))
