"""Faces larger than the networks' 256 px: what restoration does to them at their own resolution.

    .venv/bin/python scripts/large_faces.py [--faces 30] [--size 512] [--weights DIR] [--data DIR]

Held-out CelebAMask-HQ test faces at --size (their 512 px sources, resized): the benchmark
protocol's degradation (SPEC section 2, drawn on the 512 source as always) and the sharp face
itself, each restored as an aligned crop (`smfd restore --aligned`: Restorer.restore_face) and as a
photo (`smfd restore --whole`: smfd.photos.restore_photo, the face found by the detector). Prints PSNR,
SSIM and identity (dlib descriptor distance to the sharp face, its box found once on the sharp
face) against the sharp face, beside the input's own figures; a sharp input shows what restoring
costs a face that needed none.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from tqdm import tqdm

from smfd import data, metrics
from smfd.cli import int_from, run_reported, script_parser
from smfd.identity import SAME_PERSON, References
from smfd.paths import benchmark_data
from smfd.photos import restore_photo
from smfd.restorer import Restorer


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--faces", type=int_from(1), default=30, help="test faces (default 30)")
    parser.add_argument("--size", type=int_from(257, 2048), default=512, help="face size in px (default 512)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--data", default=None, help="CelebAMask-HQ folder (default: celebamask_mini of the shared data)")
    args = parser.parse_args()
    records = data.select(data.open_dataset(args.data or benchmark_data()), "test")[:args.faces]
    restorer = Restorer.from_pretrained(args.weights)

    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    sharp_faces, inputs = [], []
    for record in records:
        blurry, sharp = data.benchmark_pair(record, 0, size=args.size)[:2]
        sharp_faces.append(sharp)
        inputs.append({"blurry": blurry, "sharp": sharp})
    references = References(sharp_faces)
    missed = 0
    for i, (sharp, given) in enumerate(tqdm(list(zip(sharp_faces, inputs)), desc="faces", leave=False)):
        outputs = {}
        for kind, image in given.items():
            photo, report = restore_photo(image, restorer)
            if not report.restored:
                break
            outputs.update({(kind, "input"): image, (kind, "aligned crop"): restorer.restore(image, keep_colours=True),
                            (kind, "photo"): photo})
        else:
            for (kind, path), out in outputs.items():
                if (kind, path) == ("sharp", "input"):  # the reference itself
                    continue
                rows.setdefault(f"{kind} {path}", []).append(
                    (metrics.psnr(out, sharp), metrics.ssim(out, sharp), references.distance(i, out),
                     detail(out) / detail(sharp)))
            continue
        missed += 1  # a photo left as it was would count as a perfect (sharp) or untouched restoration
    print(f"{len(records) - missed} held-out faces at {args.size} px (the networks work at 256 px); left out: "
          f"{missed} in which the detector found no face (blurry or sharp)\n")
    print("| input, path | PSNR | SSIM | ID distance | same person | detail (Laplacian s.d. / sharp's) |")
    print("|---|---|---|---|---|---|")
    for name, values in rows.items():
        psnr, ssim, dist, fine = (np.array(v) for v in zip(*values))
        print(f"| {name} | {psnr.mean():.2f} | {ssim.mean():.4f} | {dist.mean():.4f} | "
              f"{100 * (dist < SAME_PERSON).mean():.1f} % | {fine.mean():.2f} |")


def detail(image: np.ndarray) -> float:
    """Standard deviation of the grey image's Laplacian: the finest detail a face shows."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).std())


if __name__ == "__main__":
    sys.exit(run_reported(main))
