"""The blind user study: which images and method pairs a participant sees, and the cached
restorations behind them. Storage lives in study_store, the analysis in study_stats."""

from __future__ import annotations

import hashlib
import itertools
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from smfd.images import list_images, read_image, write_png

from .study_store import VoteStore

CONTROL = "input"  # the unrestored photo: joins the study when fewer than 2 methods exist


@dataclass(frozen=True)
class Trial:
    index: int  # position in the participant's sequence
    image: Path
    left: str  # method names: stored with the vote, never shown to the participant
    right: str


def participant_rng(participant: str, *salt: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(participant.encode()), *salt])


def study_photos(folder: str | Path) -> list[Path]:
    """The study's photos, each read once: a bad file stops the start with its name, rather
    than leaving a participant stuck on it later."""
    images = list_images(folder)
    for path in images:
        read_image(path)
    return images


class Study:
    """``restore(method, image) -> image`` computes a restoration; each is computed once per
    (photo, method, weights) and cached as a PNG under ``cache_dir``."""

    def __init__(self, images: list[Path], methods: list[str], store: VoteStore, cache_dir: Path,
                 restore: Callable[[str, np.ndarray], np.ndarray]):
        if len(methods) < 2:
            methods = [*methods, CONTROL]
        self.images, self.methods, self.store = images, methods, store
        self.cache_dir, self._restore = cache_dir, restore
        self.pairs = list(itertools.combinations(methods, 2))
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self.images)

    def trial(self, participant: str, index: int) -> Trial | None:
        """The participant's index-th trial (None after the last): every participant sees the
        photos in their own random order, the method pairs in turn, each on a random side."""
        if index >= len(self.images):
            return None
        order = participant_rng(participant).permutation(len(self.images))
        pair_order = participant_rng(participant, 1).permutation(len(self.pairs))
        a, b = self.pairs[pair_order[index % len(self.pairs)]]
        if participant_rng(participant, 2, index).random() < 0.5:
            a, b = b, a
        return Trial(index, self.images[order[index]], a, b)

    # ------------------------------------------------------------ restorations
    def _cache_path(self, image: Path, method: str) -> Path:
        key = hashlib.sha256(image.read_bytes()).hexdigest()[:20]
        return self.cache_dir / method / f"{key}.png"

    def restoration(self, image: Path, method: str) -> np.ndarray:
        path = self._cache_path(image, method)
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:  # two participants on the same photo compute it once
            if path.is_file():
                return read_image(path)
            out = self._restore(method, read_image(image))
            write_png(path, out)  # atomic: a crash never leaves half a PNG in the cache
            return out

    def precompute(self, stop: threading.Event | None = None) -> int:
        """Fill the cache for every photo and method; returns how many were computed."""
        done = 0
        for image in self.images:
            for method in self.methods:
                if stop is not None and stop.is_set():
                    return done
                if not self._cache_path(image, method).is_file():
                    self.restoration(image, method)
                    done += 1
        return done
