"""The admin token that opens the study's results: where it comes from, and a gate that checks
it in constant time and limits how fast anyone can guess."""

from __future__ import annotations

import hmac
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from smfd.errors import InputError

from .rate_limit import SlidingWindow

TOKEN_ENV = "SMFD_ADMIN_TOKEN"
PER_CLIENT = 5  # wrong tokens per address within WINDOW seconds
OVERALL = 30  # wrong tokens from all addresses together within WINDOW seconds (addresses that failed)
FLOOD = 300  # wrong tokens from all addresses together within WINDOW seconds (every address)
WINDOW = 60.0


def admin_token(flag: str | None = None, file: str | Path | None = None) -> tuple[str, bool]:
    """The token and whether it was given: --admin-token, else --admin-token-file, else
    $SMFD_ADMIN_TOKEN, else a random one (the caller prints it). A file or the environment keeps
    the token out of the process list."""
    if flag is not None and not flag.strip():  # e.g. an unset shell variable: not a token anyone knows
        raise InputError("--admin-token is empty: give a token, or leave the option out for a random one")
    if file is not None and not str(file).strip():
        raise InputError("--admin-token-file is empty (an unset shell variable?): name the file")
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
        if path.stat().st_mode & 0o044:  # the file keeps the token out of the process list, not from them
            print(f"warning: {path} can be read by other users of this machine: chmod 600 it", file=sys.stderr)
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
    """The token check. Wrong tokens are limited per address and, for addresses that have failed
    themselves, from all addresses together: a distributed guess gets one try per fresh address,
    while the admin's first try from an address without failures is not blocked by others, up to
    a flood (FLOOD wrong tokens a minute from everywhere), which locks every address out."""

    def __init__(self, token: str, per_client: int = PER_CLIENT, overall: int = OVERALL,
                 window: float = WINDOW, flood: int = FLOOD):
        self._token = token.encode("utf-8")
        self._clients = SlidingWindow(per_client, window)
        self._all = SlidingWindow(overall, window)
        self._flood = SlidingWindow(flood, window)
        self._lock = threading.Lock()

    def check(self, token, client: str) -> None:
        """Return if ``token`` is right; raise Refused otherwise. Any text works, also non-ASCII;
        while an address has used up its wrong attempts (or has failed at all while everybody
        together has), even the right token is refused, so that guessing cannot go faster than
        the limits."""
        now = time.monotonic()
        with self._lock:
            wait = max(self._clients.wait(client, now), self._flood.wait("", now))
            if self._clients.count(client, now):
                wait = max(wait, self._all.wait("", now))
            if wait > 0:
                raise Refused(f"Too many wrong admin tokens: try again in {int(wait) + 1} s.", "rate-limited")
            given = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""
            if self._token and hmac.compare_digest(given, self._token):
                return
            self._clients.add(client, now)
            self._all.add("", now)
            self._flood.add("", now)
        raise Refused("Wrong admin token.", "admin-token")
