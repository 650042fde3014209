"""The blind user study: the photos, the method pairs, and the restorations behind them, all
computed before anyone votes. Dealing and votes live in study_store, the analysis in study_stats."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import shutil
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from smfd.images import check_rgb, list_images, read_image, write_png
from smfd.paths import sha256_of

from .rate_limit import SlidingWindow
from .study_gate import StudyGate
from .study_store import VoteStore

CONTROL = "input"  # the unrestored photo: joins the study when fewer than 2 methods exist
# New participant ids one network address may take per minute (`smfd demo --study-new-ids`): a
# class behind one address fits, a script that takes thousands of ids to vote again and again (or
# to fill the database) does not.
NEW_IDS_PER_ADDRESS = 60


class NotReady(RuntimeError):
    """The study's restorations are still being computed."""


def study_photos(folder: str | Path) -> list[Path]:
    """The study's photos, each read once: a bad file (or one too small to restore) stops the
    start with its name, rather than leaving a participant stuck on it later."""
    images = list_images(folder)
    for path in images:
        check_rgb(read_image(path), str(path))
    return images


def setup_of(photos: list[Path], methods: list[str], weights_tag: str) -> tuple[str, str]:
    """(fingerprint, description) of a study for VoteStore.bind: the weights, each photo's
    content, the methods."""
    content = {"weights": weights_tag, "methods": sorted(methods),
               "photos": {p.name: sha256_of(p) for p in photos}}
    fingerprint = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    # the photos' own digest, so that a refusal tells photos changed under the same names apart
    seen = hashlib.sha256(json.dumps(content["photos"], sort_keys=True).encode()).hexdigest()[:8]
    return fingerprint, (f"weights {weights_tag}; methods {', '.join(sorted(methods))}; "
                         f"{len(photos)} photos, content {seen}")


def with_control(methods: list[str]) -> list[str]:
    """The study's methods: two at least, the unrestored photo joining a single method."""
    return methods if len(methods) >= 2 else [*methods, CONTROL]


class Study:
    """``restore(method, image) -> image`` computes a restoration; each is computed once per
    (photo, method, weights) and cached as a PNG under ``cache_dir``. :meth:`precompute` also
    copies every restoration into ``serve_dir`` under a random name, the only name a browser
    ever sees, so that neither a file name nor a URL tells which method made a picture."""

    def __init__(self, images: list[Path], methods: list[str], store: VoteStore, cache_dir: Path,
                 restore: Callable[[str, np.ndarray], np.ndarray], serve_dir: Path,
                 new_ids: int = NEW_IDS_PER_ADDRESS):
        methods = with_control(methods)
        self.images, self.methods, self.store = images, methods, store
        self.cache_dir, self.serve_dir, self._restore = cache_dir, serve_dir, restore
        self.pairs = list(itertools.combinations(methods, 2))
        self._served: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.failure: str | None = None  # why precompute stopped, if it failed: the study cannot open
        self.newcomers = SlidingWindow(new_ids, 60.0)  # new participant ids per client address and minute
        self.gate = StudyGate(store.refuse)  # votes of sessions that never pressed Start, before the queue

    def __len__(self) -> int:
        return len(self.images)

    @property
    def total(self) -> int:
        return len(self.images) * len(self.methods)

    @property
    def prepared(self) -> int:
        return len(self._served)

    def new_participant(self) -> str:
        return self.store.new_participant([p.name for p in self.images], self.pairs)

    # ------------------------------------------------------------ restorations
    def _cache_path(self, image: Path, method: str) -> Path:
        key = sha256_of(image)[:20]  # a photo is known by its content, as in setup_of
        return self.cache_dir / method / f"{key}.png"

    def restoration(self, image: Path, method: str) -> Path:
        """The cached PNG of ``method`` on ``image``, computed first if missing."""
        path = self._cache_path(image, method)
        with self._lock:  # one restoration at a time: the model is shared
            if not path.is_file():
                write_png(path, self._restore(method, read_image(image)))  # atomic
        return path

    def served(self, image_name: str, method: str) -> Path:
        """The served copy of a restoration (raises NotReady before :meth:`precompute` made it)."""
        try:
            return self._served[(image_name, method)]
        except KeyError:
            raise NotReady(f"{self.prepared} of {self.total} restorations ready") from None

    def precompute(self, stop: threading.Event | None = None) -> int:
        """Compute every missing restoration and make its served copy; returns how many were
        computed. Sets :attr:`ready` when all are there."""
        self.serve_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        computed = 0
        for image in self.images:
            for method in self.methods:
                if stop is not None and stop.is_set():
                    return computed
                cached = self._cache_path(image, method)
                computed += not cached.is_file()
                try:
                    cached = self.restoration(image, method)
                except Exception as exc:  # said at Start, not left as "still being prepared" forever
                    self.failure = f"{method} on {image.name} failed ({type(exc).__name__}: {exc})"
                    print(f"user study: {self.failure}; the study cannot open", flush=True)
                    raise
                copy = self.serve_dir / f"{secrets.token_hex(10)}.png"
                shutil.copyfile(cached, copy)
                self._served[(image.name, method)] = copy
        self.ready.set()
        print(f"user study: {self.total} restorations ready ({computed} computed now)", flush=True)
        return computed
