"""``smfd restore`` and ``smfd mask`` over files and folders: whole photos or aligned face crops."""

from __future__ import annotations

import re
from pathlib import Path

from tqdm import tqdm

from .batch import check_folder, check_free, check_not_inputs, check_some_free, check_some_usable, run_batch
from .errors import InputError
from .faces import detect_faces, is_aligned_crop
from .images import check_rgb, list_images, read_groups, read_image, same_aspect, write_like, write_png
from .labels import colorize
from .photos import MIN_FACE, FaceResult, PhotoReport, restore_photo

LAYOUTS = ("auto", "aligned", "whole")


def read_rgb(path: Path):
    """An input image, refused with its file name when it cannot be restored (e.g. too small)."""
    return check_rgb(read_image(path), str(path))


def mask_path_for(path: Path, masks_dir: Path) -> Path:
    mask_path = masks_dir / f"{path.stem}.png"
    if not mask_path.is_file():
        raise InputError(f"{mask_path}: no mask for {path.name} in --masks folder")
    return mask_path


def restore_files(src: str, dst: str, make_restorer, masks: str | None = None,
                  overwrite: bool = False, layout: str = "auto", faces_out: str | None = None,
                  min_face: float = MIN_FACE, detector: str = "hog") -> None:
    """Restore every input. ``layout``: 'aligned' (each input is one aligned face crop, as it is
    whenever ``masks`` are given), 'whole' (a photo: every face found, restored and pasted back),
    or 'auto' (a photo, unless it is one face at the geometry of the training crops already:
    :func:`smfd.faces.is_aligned_crop`). ``make_restorer()`` is called once the inputs are known
    to be usable."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    files = list_images(src)
    if masks is not None and not str(masks).strip():  # Path('') would be the current folder
        raise InputError("--masks is empty: name a folder")
    masks_dir = Path(masks) if masks is not None else None
    if masks_dir is not None and layout == "whole":
        raise InputError("--masks gives the masks of aligned face crops: it does not go with --whole")
    if faces_out is not None and (layout == "aligned" or masks_dir is not None):
        raise InputError("--faces-out writes the faces found in whole photos: "
                         "it does not go with --aligned or --masks")
    aligned = layout == "aligned" or masks_dir is not None
    if masks_dir is not None and not masks_dir.is_dir():
        raise InputError(f"{masks_dir}: --masks {'is a file, not a folder' if masks_dir.exists() else 'folder not found'}")
    out = check_folder(dst, "OUT")
    crops_dir = check_folder(faces_out, "--faces-out") if faces_out is not None else None
    check_not_inputs(files, out, [masks_dir / f"{p.stem}.png" for p in files] if masks_dir is not None else [])
    if crops_dir is not None and crops_dir.resolve() == out.resolve():  # one folder: names may meet
        stems = {p.stem for p in files}
        for path in files:
            match = CROP_NAME.fullmatch(f"{path.stem}.png")
            if match and match[1] in stems:
                raise InputError(f"{out / (path.stem + '.png')}: would be both the output of {path.name} and a face "
                                 f"crop of {match[1]} (choose another --faces-out folder)")
    crops_there = crops_by_stem(crops_dir) if crops_dir is not None else {}
    given = {p.resolve() for p in files} if crops_there else set()
    for crop in (c for p in files for c in crops_there.get(p.stem, [])):  # all replaced, even of more faces
        if crop.resolve() in given:
            raise InputError(f"{crop}: an input of this run, which its face crops would replace "
                             "(choose another --faces-out folder)")
    check_some_free(files, out, overwrite)
    if crops_there and not overwrite and all(p.stem in crops_there for p in files):  # a repeated command
        raise InputError(f"{crops_there[files[0].stem][0]}: exists already (use --overwrite to replace this photo's "
                         "face crops)")

    def read_aligned(path: Path):
        """The face crop and its mask (None without --masks), refused when they do not fit."""
        image = read_rgb(path)
        if masks_dir is None:
            return image, None
        mask_path = mask_path_for(path, masks_dir)
        mask = read_groups(mask_path)
        if not same_aspect(mask.shape, image.shape):  # a mask of another picture, not another scale
            raise InputError(f"{mask_path}: a {mask.shape[1]}x{mask.shape[0]} mask for a "
                             f"{image.shape[1]}x{image.shape[0]} face: not the same shape")
        return image, mask

    def find_faces(path: Path):
        """The photo and the faces in it, refused when there is none to restore."""
        image = read_rgb(path)
        faces = detect_faces(image, detector=detector)
        if not faces:  # nothing to restore: an error, not a copy of the photo that looks like a result
            square = image.shape[0] == image.shape[1]
            hint = ("an aligned face crop? --aligned restores it whole" if layout == "auto" and square
                    else "--detector cnn finds smaller and more turned faces" if detector == "hog"
                    else "is there a face of at least 16 px?")
            raise InputError(f"{path}: no face found, nothing written ({hint})")
        if all(f.size < min_face for f in faces) and not (layout == "auto" and is_aligned_crop(image, faces)):
            small = PhotoReport([FaceResult(f, restored=False) for f in faces], min_face)  # every face too small
            raise InputError(f"{path}: {small.summary()}; nothing written (--min-face sets the smallest face restored)")
        return image, faces

    found = {}  # what the check below found in each photo it searched (its faces, or why it has none to
    # restore), kept so that no photo is read and searched twice

    def search(path: Path) -> None:
        try:
            found[path] = find_faces(path)
        except InputError as exc:
            found[path] = exc
            raise

    # Read whole (a cut body or a 4x4 image) and photos searched for faces until one has some: a
    # run with nothing to restore is refused before the networks load.
    check_some_usable(files, read_aligned if aligned else search)
    restorer = make_restorer()  # OUT and --faces-out are made by their first file

    def work_aligned(path: Path):
        return restorer.restore(*read_aligned(path))

    def work_photo(path: Path):
        earlier = crops_there.get(path.stem, [])  # listed once before the run; only this photo writes them
        if earlier and not overwrite:  # checked before the detection and restoration, not after
            raise InputError(f"{earlier[0]}: exists already (use --overwrite to replace this photo's face crops)")
        searched = found.pop(path) if path in found else find_faces(path)
        if isinstance(searched, InputError):
            raise searched
        image, faces = searched
        if layout == "auto" and is_aligned_crop(image, faces):
            crops = "; it is its own face crop, none written" if crops_dir is not None else ""
            tqdm.write(f"{path.name}: an aligned face crop ({image.shape[1]}x{image.shape[0]}), restored "
                       f"as one (--whole treats it as a photo){crops}")
            result = restorer.restore(image)
            for stale in earlier:  # an earlier --whole run's crops would not match the new result
                stale.unlink()
            return result
        photo, report = restore_photo(image, restorer, min_face=min_face, faces=faces)
        tqdm.write(f"{path.name}: {report.summary()}")
        if crops_dir is not None:
            for stale in earlier:  # an earlier run's, perhaps of more faces: none may stay beside the new
                stale.unlink()
            write_face_crops(crops_dir, path.stem, report)
        return photo

    _write_each(files, out, overwrite, "restore", work_aligned if aligned else work_photo, "restored", write_like)


CROP_KINDS = ("blurry", "mask", "mask_colour", "restored")


CROP_NAME = re.compile(rf"(.+)_face\d+_({'|'.join(sorted(CROP_KINDS, key=len, reverse=True))})\.png")


def crops_by_stem(folder: Path) -> dict[str, list[Path]]:
    """Every photo's face crops in a --faces-out folder (written by :func:`write_face_crops`), read
    once: stem -> its crops (sorted)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = CROP_NAME.fullmatch(path.name)
        if match:
            found.setdefault(match[1], []).append(path)
    return found


def write_face_crops(folder: Path, stem: str, report: PhotoReport) -> None:
    """<stem>_face<k>_{blurry,mask,mask_colour,restored}.png per restored face; mask: labels 0..4."""
    for k, face in enumerate(report.faces, 1):
        if not face.restored:
            continue
        for name, array in zip(CROP_KINDS, (face.crop, face.groups, colorize(face.groups), face.result)):
            write_png(folder / f"{stem}_face{k}_{name}.png", array)


def mask_files(src: str, dst: str, make_restorer, overwrite: bool = False) -> None:
    files = list_images(src)
    out = check_folder(dst, "OUT")
    check_not_inputs(files, out)
    check_some_free(files, out, overwrite)
    check_some_usable(files, read_rgb)  # read whole, as restore_files does
    restorer = make_restorer()
    _write_each(files, out, overwrite, "mask", lambda path: restorer.mask(read_rgb(path)), "masked")


def _write_each(files: list[Path], out: Path, overwrite: bool, desc: str, make, verb: str,
                write=lambda target, array, path: write_png(target, array)) -> None:
    """OUT/<stem>.png = make(path) for each file, by the rules of smfd.batch, written by
    ``write(target, array, path)``."""

    def work(path: Path) -> None:
        target = out / f"{path.stem}.png"
        check_free([target], overwrite)
        write(target, make(path), path)

    run_batch(files, desc, work, verb, out)
