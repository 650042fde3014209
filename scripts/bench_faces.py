"""Time the whole-photo path per photo: detection, alignment, mask + restore, paste-back.

    .venv/bin/python scripts/bench_faces.py [PHOTOS] [--weights DIR | --random-weights] [--device cpu]

PHOTOS defaults to realworld/whole of the shared data ($SMFD_SHARED_DATA, else ../shared/data
beside the project folder). Timings do not depend on the weights' values, so --random-weights
(random-init networks of the real architectures) measures the same thing before trained weights
exist.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from smfd.faces import detect_faces
from smfd.images import list_images, read_image
from smfd.paths import shared_data
from smfd.photos import MIN_FACE, align_face, paste, paste_alpha
from smfd.restorer import Restorer


def random_restorer(device: str) -> Restorer:
    from smfd.restorer import save_random_weights

    with tempfile.TemporaryDirectory() as folder:
        return Restorer.from_pretrained(save_random_weights(folder), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", default=str(shared_data() / "realworld" / "whole"),
                        help="photo or folder of photos")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    group.add_argument("--random-weights", action="store_true", help="random-init networks")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--detector", default="hog", choices=["hog", "cnn"])
    args = parser.parse_args()

    restorer = random_restorer(args.device) if args.random_weights else Restorer.from_pretrained(args.weights, args.device)
    print(f"device {restorer.device}, detector {args.detector}; times in seconds")
    print(f"{'photo':24s} {'size':>11s} {'faces':>5s} {'detect':>7s} {'align':>7s} {'restore':>8s} "
          f"{'paste':>7s} {'total':>7s}")
    warmed_up = False
    for path in list_images(args.photos):
        image = read_image(path)
        start = time.perf_counter()
        faces = detect_faces(image, detector=args.detector)
        t_detect = time.perf_counter() - start
        out, t_align, t_restore, t_paste = image.copy(), 0.0, 0.0, 0.0
        for face in (f for f in faces if f.size >= MIN_FACE):
            if not warmed_up:  # the first network call pays one-time setup; keep it out
                restorer.restore_face(align_face(image, face), keep_colours=True)
                warmed_up = True
            t0 = time.perf_counter()
            crop = align_face(image, face)
            t1 = time.perf_counter()
            restored = restorer.restore_face(crop, keep_colours=True)  # as smfd.photos.restore_photo
            t2 = time.perf_counter()
            paste(out, restored.image, paste_alpha(restored.groups), face.matrix)
            t3 = time.perf_counter()
            t_align, t_restore, t_paste = t_align + t1 - t0, t_restore + t2 - t1, t_paste + t3 - t2
        total = t_detect + t_align + t_restore + t_paste
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{path.name[:24]:24s} {size:>11s} {len(faces):5d} {t_detect:7.2f} {t_align:7.3f} "
              f"{t_restore:8.2f} {t_paste:7.3f} {total:7.2f}")


if __name__ == "__main__":
    main()
