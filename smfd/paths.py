"""Where the project's files live: the cache folder and the shared data; and file digests.

Everything fetched or derived at run time (baselines' weights, NIQE parameters, converted inference
engines, user-study data) goes below :func:`cache_root`; nothing is ever written into the package.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def cache_root() -> Path:
    """``$SMFD_CACHE`` (a leading ~ expanded) or ``~/.cache/smfd``."""
    return Path(os.environ.get("SMFD_CACHE") or Path.home() / ".cache" / "smfd").expanduser()


def shared_data() -> Path:
    """The project's real data: ``$SMFD_SHARED_DATA``, else ``shared/data`` beside the project
    folder (``../shared/data`` seen from it), whatever the current directory."""
    folder = os.environ.get("SMFD_SHARED_DATA")
    return Path(folder) if folder else Path(__file__).resolve().parents[2] / "shared" / "data"


def benchmark_data() -> Path:
    """The faces every quality figure is measured on (SPEC section 2): the shared CelebAMask-HQ
    sample, whose test split no training run may see."""
    return shared_data() / "celebamask_mini"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
