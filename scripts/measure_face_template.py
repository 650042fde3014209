"""Measure the face template of smfd/faces.py on aligned CelebA-HQ crops.

Runs the HOG detector and the 68-point predictor over aligned 512x512 CelebA-HQ crops and prints
the mean eye centres and mouth corners (TEMPLATE) and the mean detector box (TEMPLATE_BOX) as
fractions of the crop side, ready to paste into smfd/faces.py.

    .venv/bin/python scripts/measure_face_template.py [FOLDER]

FOLDER defaults to celebamask_mini/images of the shared data ($SMFD_SHARED_DATA, else
../shared/data beside the project folder): all 800 crops, its 151 held-out test faces among them,
as the shipped TEMPLATE was measured (so the alignment offsets that scripts/measure_alignment_offsets.py
measures on those faces are not fully held out).
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from smfd.cli import run_reported, script_parser
from smfd.errors import InputError
from smfd.faces import find_boxes, key_points, landmarks_in
from smfd.images import check_image_file, list_images, read_image
from smfd.paths import benchmark_data


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("folder", nargs="?", default=str(benchmark_data() / "images"),
                        help="aligned square face crops")
    args = parser.parse_args()

    points, boxes, missed = [], [], 0
    files = list_images(args.folder)
    for path in files:  # every file checked (decoded, not kept) before the first detection
        w, h = check_image_file(path, decode=True)
        if abs(w - h) > 1:  # the template is a fraction of a square crop's side
            raise InputError(f"{path}: {w}x{h} is not a square face crop")
    for path in tqdm(files, unit="face"):
        image = read_image(path)
        side = image.shape[0]
        found = find_boxes(image)
        if not found:
            missed += 1
            continue
        box, _ = max(found, key=lambda b: (b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))  # the largest face
        points.append(key_points(landmarks_in(image, box)) / side)
        boxes.append(box / side)
    if not points:
        raise InputError(f"{args.folder}: no face found in any of its {len(files)} images")
    points, boxes = np.array(points), np.array(boxes)
    print(f"{len(points)} of {len(files)} crops measured ({missed} without a detected face)")
    print("TEMPLATE (eye centres left/right, mouth corners left/right), mean +- std:")
    for name, mean, std in zip(("eye L", "eye R", "mouth L", "mouth R"), points.mean(0), points.std(0)):
        print(f"    [{mean[0]:.4f}, {mean[1]:.4f}],  # {name}: std {std[0]:.4f}, {std[1]:.4f}")
    print("TEMPLATE_BOX = (" + ", ".join(f"{v:.4f}" for v in boxes.mean(0)) + ")"
          f"  # std {', '.join(f'{v:.4f}' for v in boxes.std(0))}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
