"""What the whole-photo face detector finds: the smallest face per photo size, the tilt the upright
pass still finds, and the detector's memory on a large photo. The README's *Whole photos* figures.

    .venv/bin/python scripts/measure_detection.py [--faces 4] [--tilt-faces 8]

Sharp held-out faces of celebamask_mini (their 512x512 CelebA-HQ crops) are placed, scaled, on a
smooth grey-gradient photo. A face's width is its size as the detector measures it
(``smfd.faces.Face.size``, the unit of ``smfd restore --min-face``), taken on the crop and scaled.

- smallest face: for photos of 0.75, 3, 12 and 24 megapixels (4:3), the smallest face width (in
  photo pixels) at which each face is still found, by bisection over a ladder of widths;
- tilt: each face turned by 0-50 degrees in a 640x480 photo, found by the upright HOG pass alone
  (``detect_faces(..., rotations=False)``);
- memory: the growth of the peak resident memory of a fresh process while it detects the faces of
  a 6000x4000 photo (the photo already in memory; the models loaded before).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smfd import data
from smfd.cli import int_from, run_reported, script_parser
from smfd.faces import detect_faces
from smfd.paths import benchmark_data

LADDER = (12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 115, 128, 160, 192)  # face widths, px
MEGAPIXELS = (0.75, 3, 12, 24)
ANGLES = (0, 10, 20, 30, 40, 50)

MEMORY_RUN = """
import re, sys
from pathlib import Path
import numpy as np
from smfd.faces import detect_faces, landmark_predictor
photo = np.load(sys.argv[1])
detect_faces(photo[:256, :256])  # the detector loaded and warmed up (this corner holds no face)
landmark_predictor()  # loaded on the first face found: before, not counted in the detection
def peak():
    return int(re.search(r"VmHWM:\\s*(\\d+)", Path("/proc/self/status").read_text())[1]) // 1024
before = peak()
found = detect_faces(photo)
print(len(found), before, peak())
"""


def gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(60, 190, width, dtype=np.float32)[None, :, None]
    y = np.linspace(-30, 30, height, dtype=np.float32)[:, None, None]
    return np.clip(x + y + np.zeros((1, 1, 3), np.float32), 0, 255).astype(np.uint8)


def photo_with(face: np.ndarray, face_fraction: float, width_px: int, size: tuple[int, int],
               angle: float = 0.0) -> np.ndarray:
    """A photo of ``size`` (w, h) with ``face`` (a square crop whose face spans ``face_fraction`` of
    its width) scaled so that the face is ``width_px`` wide, turned by ``angle``, at the centre."""
    w, h = size
    side = max(8, round(width_px / face_fraction))
    crop = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if side < face.shape[0] else cv2.INTER_CUBIC)
    photo = gradient(w, h)
    if angle:
        turn = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        crop = cv2.warpAffine(crop, turn, (side, side), borderMode=cv2.BORDER_REFLECT101)
    x, y = (w - side) // 2, (h - side) // 2
    if x < 0 or y < 0:
        raise ValueError(f"a {width_px} px face does not fit a {w}x{h} photo")
    photo[y:y + side, x:x + side] = crop
    return photo


def smallest_found(face: np.ndarray, fraction: float, size: tuple[int, int]) -> int | None:
    """The smallest ladder width at which the face is found (bisection: found is taken to be
    monotonic in the width); None if not even the largest."""
    low, high = 0, len(LADDER) - 1
    if not detect_faces(photo_with(face, fraction, LADDER[high], size)):
        return None
    while low < high:
        mid = (low + high) // 2
        if detect_faces(photo_with(face, fraction, LADDER[mid], size)):
            high = mid
        else:
            low = mid + 1
    return LADDER[high]


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--data", default=str(benchmark_data()),
                   help="dataset with held-out faces (default: celebamask_mini of the shared data)")
    p.add_argument("--faces", type=int_from(1), default=4, help="faces per photo size for the smallest face (default 4)")
    p.add_argument("--tilt-faces", type=int_from(1), default=8, help="faces for the tilt test (default 8)")
    args = p.parse_args()

    faces = []  # (512x512 RGB crop, detected face width / crop width)
    for record in data.select(data.open_dataset(args.data), "test"):
        image, _ = data.load_face(record)
        found = detect_faces(image, rotations=False)
        if len(found) == 1:
            faces.append((image, found[0].size / image.shape[1]))
        if len(faces) == max(args.faces, args.tilt_faces):
            break
    if not faces:
        sys.exit(f"{args.data}: no held-out face with exactly one detected face")
    sizing, tilting = faces[:args.faces], faces[:args.tilt_faces]

    print("smallest face found (width in photo pixels; median and range over the faces):")
    for mp in MEGAPIXELS:
        w = round(np.sqrt(mp * 1e6 * 4 / 3))
        size = (w, round(w * 3 / 4))
        widths = [smallest_found(f, fr, size) for f, fr in tqdm(sizing, desc=f"{mp} MP", leave=False)]
        shown = [x for x in widths if x is not None]
        missed = len(widths) - len(shown)
        found = f"median {np.median(shown):.0f} px, {min(shown)}-{max(shown)}" if shown else "none found"
        print(f"  {mp:5g} MP ({size[0]}x{size[1]}): {found}"
              + (f", {missed} not found at {LADDER[-1]} px" if missed else ""))

    print("upright pass, faces of about 150 px in a 640x480 photo, found per tilt:")
    for angle in ANGLES:
        found = sum(bool(detect_faces(photo_with(f, fr, 150, (640, 480), angle), rotations=False))
                    for f, fr in tilting)
        print(f"  {angle:3d} degrees: {found} of {len(tilting)}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.npy"
        np.save(path, photo_with(faces[0][0], faces[0][1], 400, (6000, 4000)))
        run = subprocess.run([sys.executable, "-c", MEMORY_RUN, str(path)], capture_output=True, text=True,
                             check=True)
    n, before, after = map(int, run.stdout.split())
    print(f"6000x4000 photo: {n} face found; peak resident memory {before} MB before detection, {after} MB "
          f"after (+{after - before} MB for the detection)")


if __name__ == "__main__":
    sys.exit(run_reported(main))
