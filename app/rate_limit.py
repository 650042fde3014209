"""Counting events per key over a sliding time window: how the admin gate limits token guesses
and the study limits how fast one address can take new participant ids."""

from __future__ import annotations

import collections
import threading
import time


class SlidingWindow:
    """At most ``limit`` events per key within any ``window`` seconds.

    Each key keeps only its ``limit`` newest times (all the limit needs), and keys whose events
    have all expired are forgotten (a sweep at most once per window), so memory is bounded by the
    keys active within one window, however many events arrive."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._times: dict[str, collections.deque] = {}
        self._swept = time.monotonic()
        self._lock = threading.Lock()  # for admit(); callers of wait/add lock around both themselves

    def _recent(self, key: str, now: float) -> collections.deque | None:
        if now - self._swept > self.window:
            for old in [k for k, times in self._times.items() if not times or now - times[-1] > self.window]:
                del self._times[old]
            self._swept = now
        times = self._times.get(key)
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def count(self, key: str, now: float) -> int:
        return len(self._recent(key, now) or ())

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may have another event (0: now)."""
        times = self._recent(key, now)
        return self.window - (now - times[0]) if times and len(times) >= self.limit else 0.0

    def add(self, key: str, now: float) -> None:
        self._times.setdefault(key, collections.deque(maxlen=self.limit)).append(now)

    def admit(self, key: str) -> bool:
        """Record an event for ``key`` if the limit allows one now; whether it did."""
        now = time.monotonic()
        with self._lock:
            if self.wait(key, now):
                return False
            self.add(key, now)
            return True
