"""`smfd demo` in a child process on a free localhost port, for whoever drives it from outside: the
browser tests and the study's load test (scripts/load_study.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STUDY_READY = "restorations ready ("  # the app's log line once the study can start (app/study.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoNotReady(RuntimeError):
    """The app exited, or did not answer in time; the message ends with its log's tail."""


class DemoProcess:
    """`python -m smfd demo ARGS` on a free port, its output appended to ``log``; restartable on the
    same port and data (a crash test starts it again)."""

    def __init__(self, args: list[str], env: dict, log: Path, cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args, self.env, self.log, self.cwd = args, env, Path(log), cwd
        self.proc: subprocess.Popen | None = None
        self.starts = self.crashes = 0

    def start(self, timeout: float = 240, ready: str | None = None) -> None:
        """Start and wait until the app answers (and, with ``ready``, until its log says so once
        more than before this start)."""
        self.starts += 1
        cmd = [sys.executable, "-m", "smfd", "demo", "--port", str(self.port), *self.args]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         start_new_session=True)  # its own group: stop() ends its children too
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DemoNotReady(f"the app exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5) as r:
                    if r.status == 200 and (ready is None or self.output().count(ready) >= self.starts):
                        return
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        raise DemoNotReady(f"the app was not ready within {timeout:g} s:\n{self.tail()}")

    def output(self) -> str:
        """Everything the app has printed (to ``log``) so far."""
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def crash(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.crashes += 1

    def stop(self, again_after: float | None = None) -> None:
        """SIGTERM (and with ``again_after``, a second one that many seconds later, as an impatient
        service manager sends); SIGKILL if it has not stopped 20 s later."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            if again_after is not None:
                time.sleep(again_after)
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:  # already gone
                    pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.crash()
