"""How far aligned face crops and whole photos are from the template geometry: sets
smfd.faces.ALIGNED_TOLERANCE, below which `smfd restore` treats a photo as an aligned crop.

    .venv/bin/python scripts/measure_alignment_offsets.py [--faces 100] [--size 256]

Measures smfd.faces.alignment_offset of the main detected face (as is_aligned_crop takes it) on
CelebAMask-HQ crops of celebamask_mini (sharp, and blurred under the benchmark protocol), resized
to --size, and on the photos of realworld/whole and the crops of realworld/cropped.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from smfd import data
from smfd.cli import int_from, run_reported, script_parser
from smfd.faces import ALIGNED_TOLERANCE, alignment_offset, detect_faces, main_face
from smfd.images import list_images, read_image, resize_to
from smfd.paths import benchmark_data, shared_data


def offsets(images) -> tuple[list[float], int, int]:
    """(offsets of the main face of each image, images with no face, images with several faces of
    a size), the main face as smfd.faces.is_aligned_crop takes it."""
    found, none, several = [], 0, 0
    for image in images:
        faces = detect_faces(image)
        main = main_face(faces)
        if not faces:
            none += 1
        elif main is None:
            several += 1
        else:
            found.append(alignment_offset(main, image.shape[1], image.shape[0]))
    return found, none, several


def show(name: str, result) -> None:
    found, none, several = result
    q = np.percentile(found, [50, 90, 99, 100]) if found else [np.nan] * 4
    below = sum(v <= ALIGNED_TOLERANCE for v in found)
    print(f"{name:34s} n={len(found) + none + several:4d} no face {none:3d}, several {several:2d}; "
          f"offset median {q[0]:.3f} p90 {q[1]:.3f} p99 {q[2]:.3f} max {q[3]:.3f}; "
          f"<= {ALIGNED_TOLERANCE}: {below}")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--faces", type=int_from(1), default=100)
    parser.add_argument("--size", type=int_from(8), default=256)
    args = parser.parse_args()
    root = shared_data()
    records = data.select(data.open_dataset(benchmark_data()), "test")[: args.faces]
    size = (args.size, args.size)
    sharp = (resize_to(data.load_face(r)[0], size) for r in tqdm(records, desc="sharp", unit="face"))
    show(f"celebamask_mini sharp {args.size}", offsets(sharp))
    blurry = (resize_to(data.benchmark_pair(r)[0], size) for r in tqdm(records, desc="blurry", unit="face"))
    show(f"celebamask_mini blurry {args.size}", offsets(blurry))
    for folder in ("whole", "cropped"):
        files = list_images(root / "realworld" / folder)
        show(f"realworld/{folder}", offsets(read_image(f) for f in files))


if __name__ == "__main__":
    sys.exit(run_reported(main))
