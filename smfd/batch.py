"""Running a command over many files: one bad file is reported by name and skips only itself.

The rules every file command follows: outputs go to OUT/<stem>.<ext>; an existing output is never
replaced without ``--overwrite``; two inputs of one run with the same stem are refused rather than
overwriting each other; errors are single lines; the exit status says whether all went well.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from .errors import InputError


class BatchErrors(Exception):
    """Some inputs of a batch failed; each was reported already, the rest was written."""

    def __init__(self, failed: int, total: int):
        super().__init__(f"{failed} of {total} inputs failed (see the messages above)")


def report(message: str) -> None:
    note(f"error: {message}")


def note(message: str) -> None:
    # tqdm.write keeps the message on a line of its own while a progress bar is drawn.
    tqdm.write(f"smfd: {message}", file=sys.stderr)


@contextlib.contextmanager
def no_empty_folder_left(path: str | Path) -> Iterator[None]:
    """The folders from ``path`` up that do not exist yet are removed again after the block where it
    left them empty (innermost first), so that work which made them and saved nothing leaves none
    behind: :func:`check_folder`'s rule, for work that must make its folder before its first file."""
    missing = [p for p in (Path(path), *Path(path).parents) if not p.exists()]
    try:
        yield
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:  # holds something (or is gone): it and the folders above it stay
                break


def check_folder(path: str | Path, option: str) -> Path:
    """An output folder named on the command line: refused in one line, before any work, where it
    or a folder above it is a file, or where the nearest folder that exists cannot be written to.
    The folder itself is made by the first file written into it, so a run that writes nothing
    leaves none behind."""
    if not str(path).strip():  # e.g. an unset shell variable; Path('') would be the current folder
        raise InputError(f"{option} is empty: name a folder")
    path = Path(path)
    for p in (path.absolute(), *path.absolute().parents):
        if p.is_symlink() and not p.exists():  # mkdir would fail on it after the work ("File exists")
            raise InputError(f"{path}: {option} cannot be made: {p} is a link to {os.readlink(p)}, "
                             "which does not exist")
        if p.exists():
            if not p.is_dir():
                raise InputError(f"{path}: {option} is a file, not a folder" if p == path.absolute()
                                 else f"{path}: {option} cannot be made: {p} is a file")
            try:  # the one sure test of writing (permission bits, read-only mounts, ACLs): try it
                tempfile.TemporaryFile(dir=p).close()
            except OSError as exc:
                raise InputError(f"{path}: {option} cannot be written to ({p}: {exc.strerror})") from None
            break
    return path


def check_new_file(path: str | Path, option: str) -> Path:
    """An output file named on the command line (a command with no --overwrite): refused in one line,
    before any work, where it exists already or its folder cannot be made."""
    path = Path(path)
    if path.exists():
        raise InputError(f"{path}: {option} exists already (choose another file)")
    check_folder(path.parent, option)
    return path


def check_replaced_file(path: str | Path, option: str, suffixes: tuple[str, ...], inputs: Iterable[Path] = ()) -> Path:
    """An output file a script replaces by design (a figure of the docs): refused in one line, before
    any work, where it is a folder, has a format it is not written in, or is one of the run's inputs."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: {option} is a folder; name the file to write")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: {option} must end in {' or '.join(suffixes)}")
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise InputError(f"{path}: {option} is an input of this run; name another file")
    check_folder(path.parent, option)
    return path


def check_not_inputs(files: list[Path], out: str | Path, also: Iterable[Path] = (),
                     suffixes: tuple[str, ...] = (".png",)) -> None:
    """Refuse, even with --overwrite, a run whose outputs OUT/<stem><suffix> would replace one of its
    own inputs (``files`` or ``also``, e.g. OUT the input folder and a PNG input): it would be lost."""
    given = {p.resolve() for p in (*files, *also) if p.exists()}
    for target in (Path(out) / f"{p.stem}{suffix}" for p in files for suffix in suffixes):
        if target.exists() and target.resolve() in given:
            raise InputError(f"{target}: an input of this run, which its result would replace "
                             "(choose another output folder)")


def check_removable(folders: Iterable[Path], inputs: Iterable[Path], what: str) -> None:
    """Refuse, even with --overwrite, to remove any of ``folders`` (an earlier run's outputs) where
    it holds one of this run's inputs: the run would delete what it reads. Inputs are looked at by
    their folders, so a dataset of many files costs a folder count, not a file count."""
    targets = {folder: folder.resolve() for folder in folders if folder.is_dir()}  # none: nothing removed
    if not targets:
        return
    by_folder: dict[Path, Path] = {}  # each input's real folder -> one input there, to name
    for path in inputs:
        by_folder.setdefault(path.parent, path)
    for real, path in {p.resolve(): path for p, path in by_folder.items()}.items():
        for folder, target in targets.items():
            if real == target or real.is_relative_to(target):
                raise InputError(f"{folder}: holds {path}, {what}, which replacing this folder would delete "
                                 "(choose another --out)")


def check_some_usable(files: list[Path], check: Callable[[Path], None]) -> None:
    """Before the networks load, refuse a run in which no input passes ``check`` (e.g. the image's
    header and its mask), naming the first; where only some fail, the batch names them one by one."""
    errors = []
    # a bar only where the inputs before the first usable one take long (photos without a face)
    for path in tqdm(files, desc="looking for a usable input", unit="file", delay=2, leave=False):
        try:
            check(path)
        except InputError as exc:
            errors.append(exc)
        else:
            return
    if errors:
        more = f" (and the {len(errors) - 1} other inputs cannot be used either)" if len(errors) > 1 else ""
        raise InputError(f"{errors[0]}{more}")


def check_free(paths: Iterable[Path], overwrite: bool) -> None:
    for path in paths:
        if path.is_dir():  # not even --overwrite replaces a folder
            raise InputError(f"{path}: a folder of that name is in the way of this output")
        if path.exists() and not overwrite:
            raise InputError(f"{path}: exists already (use --overwrite to replace it)")


def check_some_free(files: list[Path], out: Path, overwrite: bool) -> None:
    """Refuse a run whose every output OUT/<stem>.png exists already (a command repeated without
    --overwrite) before its networks load; where only some exist, those files are refused one by one.
    A single file's output is checked as the run would: a folder in its way, even with --overwrite."""
    if len(files) == 1:
        check_free([out / f"{files[0].stem}.png"], overwrite)
    elif not overwrite and files and all((out / f"{p.stem}.png").exists() for p in files):
        first = out / f"{files[0].stem}.png"
        raise InputError(f"{first} and the {len(files) - 1} other outputs: exist already "
                         "(use --overwrite to replace them)")


def run_batch(files: list[Path], desc: str, work: Callable[[Path], None], verb: str, out: Path) -> int:
    """Call ``work(path)`` per file with a progress bar, then print e.g. "blurred 3 of 4 images
    into OUT"; raises BatchErrors if any failed."""
    failed = 0
    stems: dict[str, Path] = {}  # stem -> the input whose outputs carry it in this run
    for path in tqdm(files, desc=desc, unit="image", disable=len(files) < 2):
        try:
            if path.stem in stems:  # e.g. a.jpg and a.png: never replace this run's own output
                raise InputError(f"{path}: same name as {stems[path.stem].name}, whose result has that name")
            stems[path.stem] = path
            work(path)
        except InputError as exc:
            if len(files) == 1:  # the run's only input: its one line is the whole story (exit status 2)
                raise
            report(str(exc))
            failed += 1
        except Exception as exc:  # an unexpected failure on one file must not stop the others
            if os.environ.get("SMFD_DEBUG"):
                raise
            report(f"{path}: {type(exc).__name__}: {exc} (set SMFD_DEBUG=1 for the traceback)")
            failed += 1
    print(f"{verb} {len(files) - failed} of {len(files)} images into {out}")
    if failed:
        raise BatchErrors(failed, len(files))
    return len(files) - failed
