"""Time the whole-photo path per photo: detection, then smfd.photos.restore_photo (its networks apart,
in all and per face restored).

    .venv/bin/python scripts/bench_faces.py [PHOTOS] [--weights DIR | --random-weights] [--device cpu]

PHOTOS defaults to realworld/whole of the shared data ($SMFD_SHARED_DATA, else ../shared/data
beside the project folder). Timings do not depend on the weights' values, so --random-weights
(random-init networks of the shipped configurations) measures the same thing without them. The
networks' time is Restorer.restore_face's: the networks and the colour and fine-detail steps.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from smfd.cli import run_reported, script_parser
from smfd.faces import detect_faces, landmark_predictor
from smfd.images import check_image_file, list_images, read_image
from smfd.paths import shared_data
from smfd.photos import restore_photo
from smfd.restorer import Restorer, random_weights_like


class TimedRestorer:
    """The restorer with the seconds spent in its networks summed: ``restore_photo`` (the real
    whole-photo path, timed as it is) calls ``restore_face`` once per face."""

    def __init__(self, restorer: Restorer):
        self.restorer, self.seconds, self.faces = restorer, 0.0, 0

    def restore_face(self, *args, **kwargs):
        self.faces += 1
        start = time.perf_counter()
        try:
            return self.restorer.restore_face(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def random_restorer(device: str) -> Restorer:
    """Random-init networks of the shipped configurations (the configs' defaults are the thesis'
    widths, about 2.8x slower per face)."""
    with tempfile.TemporaryDirectory() as folder:
        return Restorer.from_pretrained(random_weights_like(folder), device)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("photos", nargs="?", default=str(shared_data() / "realworld" / "whole"),
                        help="photo or folder of photos")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    group.add_argument("--random-weights", action="store_true", help="random-init networks")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    args = parser.parse_args()

    photos = list_images(args.photos)
    for path in photos:  # every one an image, before the setup
        check_image_file(path)
    restorer = random_restorer(args.device) if args.random_weights else Restorer.from_pretrained(args.weights, args.device)
    print(f"device {restorer.device}, engine {restorer.engine.describe()}, detector {args.detector}; times in seconds")
    print(f"{'photo':24s} {'size':>11s} {'faces':>5s} {'detect':>7s} {'networks':>9s} {'align+paste':>12s} "
          f"{'total':>7s} {'per face':>9s}")
    # one-time setup, not timed: the networks, the detector and the landmark model (loaded by the first face found)
    restorer.restore_face(np.full((256, 256, 3), 128, np.uint8), keep_colours=True)
    detect_faces(np.full((256, 256, 3), 128, np.uint8), detector=args.detector)
    landmark_predictor()
    for path in photos:
        image = read_image(path)
        start = time.perf_counter()
        faces = detect_faces(image, detector=args.detector)
        t_detect = time.perf_counter() - start
        timed = TimedRestorer(restorer)
        start = time.perf_counter()
        restore_photo(image, timed, faces=faces)
        t_photo = time.perf_counter() - start
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{path.name[:24]:24s} {size:>11s} {len(faces):5d} {t_detect:7.2f} {timed.seconds:9.2f} "
              f"{t_photo - timed.seconds:12.3f} {t_detect + t_photo:7.2f} {timed.seconds / max(timed.faces, 1):9.2f}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
