"""Pack the training faces for the lent GPU machine, which receives at most 64 MiB with the working tree.

    .venv/bin/python scripts/pack_for_device.py [--out .device/data] [--quality 90] [--budget-mb 32]

Copies the training and validation faces of celebamask_mini (never its test split, so every figure
measured here on the test faces stays held out) with their masks, then FFHQ faces while the budget
lasts (less any copy of a CelebAMask-HQ test face: FFHQ's sample holds some under other ids),
each image as JPEG at ``--quality`` (or its original JPEG file where that is smaller). The
split is a hash of each face id, so the packed folders give the same training and validation faces
as the originals. ``.device/`` is
git-ignored; name it in the device tool's ``carry``. Prints what it wrote and its size.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import cv2

from smfd import data
from smfd.batch import check_folder, no_empty_folder_left
from smfd.cli import int_from, number_in, run_reported, script_parser
from smfd.errors import InputError
from smfd.images import read_image, read_labels
from smfd.paths import shared_data


def pack(records: list, out: Path, quality: int, budget: int, used: int) -> tuple[int, int]:
    """Copy faces into ``out`` until ``budget`` bytes: with masks in the merged layout (images/,
    masks/), without as a plain folder of images. Returns (faces, bytes used)."""
    images = out / "images" if any(r.mask for r in records) else out
    images.mkdir(parents=True, exist_ok=True)
    count = 0
    for record in records:
        # decoded as training will (a damaged file is one line here, not a failed run on the device)
        image = cv2.cvtColor(read_image(record.image), cv2.COLOR_RGB2BGR)
        if record.mask:
            read_labels(record.mask)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if record.image.suffix.lower() in (".jpg", ".jpeg") and record.image.stat().st_size <= len(jpeg):
            jpeg = record.image.read_bytes()  # a smaller JPEG already: no second generation of loss
        size = len(jpeg) + (record.mask.stat().st_size if record.mask else 0)
        if used + size > budget:
            break
        (images / f"{record.id}.jpg").write_bytes(jpeg)
        if record.mask:
            (out / "masks").mkdir(exist_ok=True)
            shutil.copyfile(record.mask, out / "masks" / f"{record.id}.png")
        used += size
        count += 1
    return count, used


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--data", default=str(shared_data()), help="folder holding celebamask_mini and ffhq_mini")
    parser.add_argument("--out", default=".device/data")
    parser.add_argument("--quality", type=int_from(50, 100), default=90, help="JPEG quality of the packed images (50-100)")
    parser.add_argument("--budget-mb", type=number_in(0, 64, low_open=True), default=32.0,
                        help="size of the pack in MiB (the tracked files take about 11 of the 64: git ls-tree -r -l HEAD)")
    args = parser.parse_args()
    out, budget = Path(args.out), int(args.budget_mb * 2**20)
    if out.exists():
        raise InputError(f"{out}: exists already; remove it first")
    check_folder(out.parent, "--out")
    celebamask = data.open_dataset(Path(args.data) / "celebamask_mini")
    celeba = data.select(celebamask, "trainval")
    # Packed beside --out and renamed at the end: a pack that does not fit leaves nothing behind,
    # not even the folders made for it
    with no_empty_folder_left(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            faces, used = pack(celeba, building / "celebamask_mini", args.quality, budget, 0)
            if faces < len(celeba):
                raise InputError(f"only {faces} of {len(celeba)} CelebAMask-HQ faces fit in "
                                 f"{args.budget_mb:g} MiB: raise --budget-mb")
            ffhq_dir = Path(args.data) / "ffhq_mini"
            ffhq = data.open_dataset(ffhq_dir) if ffhq_dir.is_dir() else []
            # FFHQ holds re-encoded copies of CelebA-HQ faces: on the device the test faces are not there
            # for smfd train to find them, so copies of test faces are left out here
            copies = data.copies_of(ffhq, data.select(celebamask, "test"))
            if copies:
                print(f"left out {len(copies)} FFHQ faces that are copies of CelebAMask-HQ test faces: "
                      + data.named_copies(copies))
            kept = [r for r in ffhq if r.id not in copies]
            extra, used2 = pack(kept, building / "ffhq_mini", args.quality, budget, used) if ffhq else (0, used)
            building.chmod(0o755)  # mkdtemp's folder is owner-only; the pack is an ordinary folder
            building.rename(out)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    print(f"packed {faces} CelebAMask-HQ faces with masks ({used / 2**20:.1f} MiB) and {extra} FFHQ faces "
          f"({(used2 - used) / 2**20:.1f} MiB) into {out}, JPEG quality {args.quality}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
