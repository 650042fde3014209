"""``smfd restore`` and ``smfd mask`` over files and folders of aligned face crops."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .images import InputError, list_images, read_image, read_labels, write_png
from .labels import check_groups


def _prepare_out(dst: str) -> Path:
    out = Path(dst)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _each(files: list[Path], out: Path, overwrite: bool, desc: str, work) -> None:
    """Run ``work(path) -> array`` per file, writing OUT/<stem>.png; one bad file does not stop
    the others, and an existing output is never replaced without ``overwrite``."""
    from .cli import BatchErrors, report

    failed = 0
    for path in tqdm(files, desc=desc, unit="image", disable=len(files) < 2):
        target = out / f"{path.stem}.png"
        try:
            if target.exists() and not overwrite:
                raise InputError(f"{target}: exists already (use --overwrite to replace it)")
            write_png(target, work(path))
        except InputError as exc:
            report(str(exc))
            failed += 1
    print(f"{desc}: wrote {len(files) - failed} of {len(files)} images into {out}")
    if failed:
        raise BatchErrors(failed, len(files))


def load_mask_for(path: Path, masks_dir: Path):
    mask_path = masks_dir / f"{path.stem}.png"
    if not mask_path.is_file():
        raise InputError(f"{mask_path}: no mask for {path.name} in --masks folder")
    try:
        return check_groups(read_labels(mask_path))
    except ValueError as exc:
        raise InputError(f"{mask_path}: {exc}") from None


def restore_files(src: str, dst: str, make_restorer, masks: str | None = None,
                  overwrite: bool = False) -> None:
    """``make_restorer()`` is called once the inputs are known to be usable."""
    files = list_images(src)
    masks_dir = Path(masks) if masks else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise InputError(f"{masks_dir}: --masks folder not found")
    out = _prepare_out(dst)
    restorer = make_restorer()

    def work(path: Path):
        image = read_image(path)
        mask = load_mask_for(path, masks_dir) if masks_dir else None
        return restorer.restore(image, mask)

    _each(files, out, overwrite, "restore", work)


def mask_files(src: str, dst: str, make_restorer, overwrite: bool = False) -> None:
    files = list_images(src)
    out = _prepare_out(dst)
    restorer = make_restorer()
    _each(files, out, overwrite, "mask", lambda path: restorer.mask(read_image(path)))
