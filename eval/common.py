"""What the evaluation modules share."""

from __future__ import annotations


class MetricUnavailable(RuntimeError):
    """A metric cannot run here (its model or parameters are absent). Results show it as "not
    available" with ``reason``, never as a number; ``remedy`` says how to get what is missing."""

    def __init__(self, reason: str, remedy: str = ""):
        super().__init__(f"{reason}; {remedy}" if remedy else reason)
        self.reason, self.remedy = reason, remedy
