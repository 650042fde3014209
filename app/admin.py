"""The admin token that opens the study's results: where it comes from, and a gate that checks
it in constant time and limits how fast anyone can guess."""

from __future__ import annotations

import collections
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from smfd.errors import InputError

TOKEN_ENV = "SMFD_ADMIN_TOKEN"
PER_CLIENT = 5  # wrong tokens per address within WINDOW seconds
OVERALL = 30  # wrong tokens from all addresses together within WINDOW seconds
WINDOW = 60.0


def admin_token(flag: str | None = None, file: str | Path | None = None) -> tuple[str, bool]:
    """The token and whether it was given: --admin-token, else --admin-token-file, else
    $SMFD_ADMIN_TOKEN, else a random one (the caller prints it). A file or the environment keeps
    the token out of the process list."""
    if flag is not None and not flag.strip():  # e.g. an unset shell variable: not a token anyone knows
        raise InputError("--admin-token is empty: give a token, or leave the option out for a random one")
    if flag and file:
        raise InputError("give either --admin-token or --admin-token-file, not both")
    if file:
        path = Path(file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the admin token ({exc.__class__.__name__})") from None
        if not token:
            raise InputError(f"{path}: the admin token file is empty")
        return token, True
    token = flag or os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, True
    return secrets.token_urlsafe(12), False


class Refused(Exception):
    """A wrong token or too many attempts: the message says which."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind  # study_store.REFUSALS key


class AdminGate:
    def __init__(self, token: str, per_client: int = PER_CLIENT, overall: int = OVERALL,
                 window: float = WINDOW):
        self._token = token.encode("utf-8")
        self.per_client, self.overall, self.window = per_client, overall, window
        self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._all: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def _wait(self, times: collections.deque, limit: int, now: float) -> float:
        while times and now - times[0] > self.window:
            times.popleft()
        return self.window - (now - times[0]) if len(times) >= limit else 0.0

    def check(self, token, client: str) -> None:
        """Return if ``token`` is right; raise Refused otherwise. Any text works, also non-ASCII;
        while an address (or everybody together) has used up its wrong attempts, even the right
        token is refused, so that guessing cannot go faster than the limit."""
        now = time.monotonic()
        with self._lock:
            wait = max(self._wait(self._failures[client], self.per_client, now),
                       self._wait(self._all, self.overall, now))
            if wait > 0:
                raise Refused(f"Too many wrong admin tokens: try again in {int(wait) + 1} s.", "rate-limited")
            given = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""
            if self._token and hmac.compare_digest(given, self._token):
                return
            self._failures[client].append(now)
            self._all.append(now)
            if len(self._failures) > 10_000:  # forget quiet addresses
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]
        raise Refused("Wrong admin token.", "admin-token")
