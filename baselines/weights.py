"""Weights of the external methods: one cache folder, downloads verified by SHA-256.

Files live in ``$SMFD_CACHE/weights`` (default ``~/.cache/smfd/weights``) under their official
names. Nothing is ever downloaded implicitly: :func:`download` runs only when asked
(``smfd baselines download NAME`` or ``smfd eval --download``), so loading a method offline fails
fast with a message that says how to get its file.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from smfd.errors import InputError
from smfd.images import PARTIAL_PREFIX, write_atomically
from smfd.paths import cache_root, sha256_of

CHUNK = 1 << 20


def weights_dir() -> Path:
    return cache_root() / "weights"


STALE_PART = 600  # seconds: a download in progress writes its part file far more often


def _remove_stale_parts(folder: Path) -> None:
    """A download killed outright (SIGKILL, power) leaves its part file, hundreds of MB; a download
    running beside this one keeps its own fresh."""
    if folder.is_dir():
        # write_atomically's unfinished files; tmp*.part: those of versions before it named them so
        for part in [*folder.glob(f"{PARTIAL_PREFIX}*.part"), *folder.glob("tmp*.part")]:
            if part.is_file() and time.time() - part.stat().st_mtime > STALE_PART:
                part.unlink(missing_ok=True)


def recorded_digest(target: Path) -> Path:
    """Where the SHA-256 of a download without a pinned digest is recorded, so that the file can
    be told damaged later (``RestoreFormer++.ckpt.sha256``)."""
    return target.with_name(target.name + ".sha256")


def recorded_sha256(target: Path) -> str | None:
    """The digest recorded at ``target``'s download (None: not downloaded by smfd, or the record is gone)."""
    try:
        return recorded_digest(target).read_text().strip() or None
    except OSError:
        return None


def download(url: str, target: Path, sha256: str | None, force: bool = False,
             verify: Callable[[Path], None] | None = None) -> Path:
    """Fetch ``url`` into ``target`` atomically; a file whose digest differs from ``sha256``, or
    that is shorter than the server announced, or that ``verify(path)`` (when given: for a file
    without a pinned digest) refuses with an InputError (an error page, a file cut short with no
    length announced), is refused; without a pinned digest the computed one is printed. A file
    present already is kept if its digest is right (the pinned one, else the one recorded at its
    download) and ``verify`` takes it."""
    if target.is_file() and not force:
        expected = sha256 if sha256 is not None else recorded_sha256(target)
        problem = (("not the official file" if sha256 is not None else "not the file downloaded then")
                   + " (its SHA-256 differs: damaged or cut short)"
                   if expected is not None and sha256_of(target) != expected else _unusable(target, verify))
        if problem is None:
            print(f"{target}: present already (use --force to fetch it again)")
            return target
        print(f"{target}: present, but {problem}; fetching it again")
    _remove_stale_parts(target.parent)
    digest = hashlib.sha256()

    def fetch(tmp: Path) -> None:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                written = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                    while block := response.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        bar.update(len(block))
        # URLError, timeouts, a full disk, a broken chunked answer: the download's failure, not the cache's
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None
        if total is not None and written != total:  # a connection closed early ends read() quietly
            raise InputError(f"{url}: download incomplete ({written:,} of {total:,} bytes); file discarded, "
                             "try again")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise InputError(f"{url}: SHA-256 mismatch (expected {sha256}, got {digest.hexdigest()}); "
                             "file discarded")
        problem = _unusable(tmp, verify)
        if problem is not None:
            raise InputError(f"{url}: {problem}; file discarded")

    write_atomically(target, fetch, ".part")  # a cache folder that cannot be written: named by it
    got = digest.hexdigest()
    if sha256 is None:
        write_atomically(recorded_digest(target), lambda tmp: tmp.write_text(got + "\n"), ".part")
        print(f"{target.name}: no SHA-256 is pinned for this file; computed {got} "
              "(compare it with the publisher's before trusting results)")
    print(f"{target}: ok (sha256 {got})")
    return target


def _unusable(path: Path, verify: Callable[[Path], None] | None) -> str | None:
    """Why ``verify`` refuses the file (its own name left out), or None (also without ``verify``)."""
    if verify is None:
        return None
    try:
        verify(path)
    except InputError as exc:
        return f"not a usable checkpoint ({str(exc).removeprefix(f'{path}: ')})"
    return None


def state_dict_mismatch(missing: list[str], unexpected: list[str], shown: int = 6) -> str:
    """The keys a checkpoint lacks and the ones it has in excess, named (the first few of each)."""
    def some(keys: list[str]) -> str:
        more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    parts = ([f"missing keys: {some(missing)}"] if missing else []) + (
        [f"unexpected keys: {some(unexpected)}"] if unexpected else [])
    return "; ".join(parts)


def load_error_details(exc: RuntimeError, shown: int = 6) -> str:
    """torch's load_state_dict error on one line, keeping the key names its later lines give."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    details = lines[1:] or lines
    more = f" (and {len(details) - shown} more)" if len(details) > shown else ""
    return " ".join(details[:shown]) + more
