"""The interface every restoration method of the lab implements, apart from the registry that
lists and loads them (so that the implementations and the registry do not import each other)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smfd.errors import InputError
from smfd.paths import sha256_of

from . import weights as _weights


class WeightsMissing(InputError):
    """A method's weights file is absent; the message says how to get it."""


class WeightsDamaged(WeightsMissing):
    """A method's weights file is there but is not the official one (damaged or cut short)."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str  # for tables, e.g. "GFPGAN v1.4 (CVPR 2021)"
    licence: str
    commercial_use: bool
    native_size: int | None  # the network's input size; None = any size
    url: str | None  # official download of the weights
    sha256: str | None  # None: the publisher's file has no digest we could verify
    needs_weights: bool
    needs_mask: bool  # restore() needs a 5-group mask
    notes: str = ""
    filename: str | None = None  # official file name, also its name in the cache

    def cached_path(self) -> Path | None:
        return _weights.weights_dir() / self.filename if self.filename else None

    def expected_sha256(self) -> str | None:
        """The pinned digest; for a file without one, the digest recorded when the cached file was
        downloaded (None: nothing to compare with)."""
        if self.sha256 is not None or self.cached_path() is None:
            return self.sha256
        return _weights.recorded_sha256(self.cached_path())  # None: copied in by hand, or no record

    def cache_state(self) -> str:
        """'missing', 'damaged' (present, but its SHA-256 is not the official one, or not the one
        recorded at its download) or 'cached'."""
        path = self.cached_path()
        if path is None or not path.is_file():
            return "missing"
        expected = self.expected_sha256()
        return "damaged" if expected is not None and sha256_of(path) != expected else "cached"


class Method(ABC):
    info: MethodInfo
    weights: str = ""  # which weights file it runs, for the results (external networks)

    @abstractmethod
    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 HxWx3 (and a 5-group uint8 HxW mask where needed) -> RGB uint8 HxWx3."""
