"""Everything the app loads once at start-up: the models, the examples, the baselines, the study.

Handlers get an :class:`AppContext`; none of them loads a model or keeps per-user data in it.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smfd.paths import sha256_of
from smfd.restorer import PATH_VERSION, Restorer, weight_files

from .examples import Example

OUTPUT_TTL = 3600  # seconds a request's download folder is kept
SWEEP_EVERY = 300  # seconds between looks for old request folders on a server with no requests
OWN_METHODS = ("blurry", "input")  # the unrestored input: the registry's name and the study's control


def weights_tag(folder: str | Path | None) -> str:
    """A short fingerprint of the SMFD weights and of the way the library restores with them
    (PATH_VERSION): cached restorations, and a study's votes on them, are only reused with both."""
    # Studies set up before the path was part of the tag (path 3) keep their tag and database.
    version = f"path {PATH_VERSION};" if PATH_VERSION > 3 else ""
    digests = version + "".join(sha256_of(path) for path in weight_files(folder))
    return hashlib.sha256(digests.encode()).hexdigest()[:12]


@dataclass
class AppContext:
    restorer: Restorer
    examples: list[Example]
    work_dir: Path  # each request writes its downloads into its own folder below
    weights_tag: str = "unknown"
    # None (as in tests): the Compare tab shows no baselines, the Restore tab no whole-photo mode.
    baselines: Any | None = None  # module-like (baselines.registry): methods(), load(name, ...)
    whole_photo: Callable | None = None  # smfd.photos.restore_photo: (photo, restorer) -> (photo, report)
    study: Any | None = None  # app.study.Study
    admin: Any | None = None  # app.admin.AdminGate: checks the token that opens the study results
    _methods: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def example(self, name: str) -> Example:
        for ex in self.examples:
            if ex.name == name:
                return ex
        from smfd.errors import InputError

        raise InputError(f"unknown example {name!r}")

    def output_dir(self) -> Path:
        """A fresh folder for one request's files under work_dir/requests."""
        self.remove_old_requests()
        folder = self.work_dir / "requests" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def remove_old_requests(self) -> None:
        """Request folders older than OUTPUT_TTL go. Nothing else in work_dir is touched: the user
        study serves its images from work_dir/study for as long as the server runs."""
        requests = self.work_dir / "requests"
        now = time.time()
        for old in requests.iterdir() if requests.is_dir() else ():
            try:
                expired = old.is_dir() and now - old.stat().st_mtime > OUTPUT_TTL
            except FileNotFoundError:  # another request removed it meanwhile
                continue
            if expired:
                shutil.rmtree(old, ignore_errors=True)

    def keep_removing_old_requests(self, every: float = SWEEP_EVERY) -> threading.Event:
        """Remove old request folders every ``every`` seconds, so that a face restored on an idle
        server does not stay there until the next request; until the event returned is set."""
        stop = threading.Event()

        def sweep():
            while not stop.wait(every):
                self.remove_old_requests()

        threading.Thread(target=sweep, daemon=True, name="request-sweep").start()
        return stop

    # ------------------------------------------------------------ baselines
    def external_methods(self) -> list:
        """The registry's methods, less the ones the app runs itself: the blurry input and SMFD
        (with the app's own restorer and the mask the user chose)."""
        if self.baselines is None:
            return []
        return [m for m in self.baselines.methods() if m.name not in OWN_METHODS and not m.name.startswith("smfd")]

    def baseline(self, name: str):
        """A loaded baseline (once per app); raises the registry's WeightsMissing when absent."""
        with self._lock:
            if name not in self._methods:
                self._methods[name] = self.baselines.load(
                    name, device=str(self.restorer.device), restorer=self.restorer)
            return self._methods[name]

    def run_method(self, name: str, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """'smfd' (generated mask unless given), 'input' (the image itself) or a baseline."""
        if name == "input":
            return image
        if name == "smfd":
            return self.restorer.restore(image, mask)
        return self.baseline(name).restore(image, mask)
