"""The README's whole-photo figure: a real photo before and after ``smfd restore``, with its faces
enlarged beside it.

    .venv/bin/python scripts/make_whole_photo_figure.py [--photo PATH] [--weights DIR] [--out PNG]

Defaults: realworld/whole/10045.png of the shared data ($SMFD_SHARED_DATA, else ../shared/data
beside the project folder), the shipped weights (smfd/weights), docs/whole_photo.png. The restored
photo is what ``smfd restore PHOTO OUT`` writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from smfd.batch import check_replaced_file
from smfd.cli import run_reported, script_parser
from smfd.errors import InputError
from smfd.faces import detect_faces, is_aligned_crop
from smfd.images import read_image, resize_to, write_png
from smfd.paths import shared_data
from smfd.photos import restore_photo
from smfd.restorer import Restorer

ROOT = Path(__file__).resolve().parents[1]
PHOTO_HEIGHT = 560  # px of each whole photo in the figure
MAX_FACES = 4  # enlarged faces shown beside the photos
GAP = 8
LABEL = 22  # px of the caption strip above each panel


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return resize_to(image, (round(w * height / h), height))


def captioned(image: np.ndarray, text: str) -> np.ndarray:
    panel = Image.new("RGB", (image.shape[1], image.shape[0] + LABEL), "white")
    panel.paste(Image.fromarray(image), (0, LABEL))
    ImageDraw.Draw(panel).text((4, 4), text, fill="black")
    return np.asarray(panel)


def row(panels: list[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    pieces = []
    for p in panels:
        pad = np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)
        pieces += [np.vstack([p, pad]), np.full((height, GAP, 3), 255, np.uint8)]
    return np.hstack(pieces[:-1])


def stack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)]) for r in rows]
    gap = np.full((GAP, width, 3), 255, np.uint8)
    return np.vstack([x for r in padded for x in (r, gap)][:-1])


def zoom(image: np.ndarray, centre: np.ndarray, size: float, side: int) -> np.ndarray:
    """A square of 1.6 face widths around the face, resized to ``side`` px (white beyond the
    photo's edge, so that a face near it is not stretched)."""
    half = int(0.8 * size)
    padded = cv2.copyMakeBorder(image, half, half, half, half, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    x, y = (int(v) + half for v in centre)
    return cv2.resize(padded[y - half:y + half, x - half:x + half], (side, side), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--photo", default=str(shared_data() / "realworld" / "whole" / "10045.png"),
                        help="a photo with faces (default: realworld/whole/10045.png of the shared data)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "whole_photo.png"),
                        help="the figure, a PNG (default: docs/whole_photo.png, replaced)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the networks run (default auto: the GPU when there is one)")
    args = parser.parse_args()

    check_replaced_file(args.out, "--out", (".png",), inputs=[Path(args.photo)])
    image = read_image(args.photo)  # before the networks load, as smfd restore reads its inputs
    faces = detect_faces(image)
    if not faces or is_aligned_crop(image, faces):  # smfd restore writes no photo, or restores it whole
        raise InputError(f"{args.photo}: {'no face found' if not faces else 'an aligned face crop'}: "
                         "the figure shows a whole photo with its faces")
    restored, report = restore_photo(image, Restorer.from_pretrained(args.weights, args.device), faces=faces)
    if not report.restored:
        raise InputError(f"{args.photo}: {report.summary()}; no figure written")
    print(f"{Path(args.photo).name}: {report.summary()}")

    panels = [captioned(fit_height(image, PHOTO_HEIGHT), "input"),
              captioned(fit_height(restored, PHOTO_HEIGHT), "smfd restore")]
    shown = report.restored[:MAX_FACES]
    if shown:  # one row per face, input | restored, as tall as the photos together
        side = min(240, (PHOTO_HEIGHT + LABEL - GAP * (len(shown) - 1)) // len(shown) - LABEL)
        panels.append(stack([row([captioned(zoom(picture, r.face.centre, r.face.size, side), f"face {k}: {what}")
                                  for picture, what in ((image, "input"), (restored, "restored"))])
                             for k, r in enumerate(shown, 1)]))
    figure = row(panels)
    print(f"wrote {write_png(args.out, figure)} ({figure.shape[1]}x{figure.shape[0]}), "
          f"weights: {args.weights or 'shipped (smfd/weights)'}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
