"""Shared fixtures: the real data in ../shared/data, small random-weight checkpoints and a real
PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from smfd.paths import shared_data as default_shared_data


def _find_shared_data() -> Path:
    """$SMFD_SHARED_DATA, else ../shared/data beside the checkout (smfd.paths.shared_data), else
    the workplace's /work/shared."""
    found, fallback = default_shared_data(), Path("/work/shared/data")
    if os.environ.get("SMFD_SHARED_DATA") or (found / "celebamask_mini").is_dir():
        return found
    return fallback if (fallback / "celebamask_mini").is_dir() else found


SHARED_DATA = _find_shared_data()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (see its README). Absent, the tests that need it fail rather than skip: a
    mistyped $SMFD_SHARED_DATA must not pass half the suite unseen."""
    if not (SHARED_DATA / "celebamask_mini").is_dir():
        pytest.fail(f"real face data not found at {SHARED_DATA} (set SMFD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def celeba(shared_data) -> Path:
    return shared_data / "celebamask_mini"


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A weights folder with randomly initialised networks of the real architectures."""
    from smfd.restorer import save_random_weights

    return save_random_weights(tmp_path_factory.mktemp("weights"))


# ---------------------------------------------------------------- a real PostgreSQL server

class PostgresServer:
    """A throw-away PostgreSQL server on 127.0.0.1 (Debian's binaries, run as the postgres user
    when the tests run as root), with a data folder that is removed afterwards."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            pytest.fail("PostgreSQL is missing: run `make postgres` (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="smfd-pg-"))  # outside pytest's root-only folders
        self.data, self.log = self.root / "data", self.root / "server.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                  "-E", "UTF8")
        self.start()
        self.databases = 0

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            pytest.fail(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def new_database(self) -> str:
        """The URL of a fresh, empty database."""
        import psycopg

        self.databases += 1
        name = f"study{self.databases}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def study_db(request, tmp_path) -> str:
    """A fresh study database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.sqlite'}"
    return request.getfixturevalue("postgres").new_database()
