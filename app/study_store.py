"""User-study votes in any SQLAlchemy database (SQLite by default), built so that no vote is lost.

* every vote is its own committed transaction, so a crash or restart keeps all earlier votes;
* SQLite runs in WAL mode with synchronous=FULL and a busy timeout, so several app replicas on
  one machine can share the file; a vote that still meets a lock is retried with back-off;
* (participant, trial) is unique, so a vote sent twice (double click, retry) is stored once.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, UniqueConstraint,
                        create_engine, event, func, insert, select)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from smfd.errors import InputError
from smfd.paths import cache_root

RETRIES = 8

metadata = MetaData()
votes_table = Table(
    "votes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant", String(64), nullable=False),  # random id, nothing personal
    Column("trial", Integer, nullable=False),  # position in the participant's sequence
    Column("image", String(255), nullable=False),
    Column("left", String(64), nullable=False),  # method shown on the left
    Column("right", String(64), nullable=False),
    Column("chosen", String(64), nullable=False),  # method picked as better
    Column("side", String(8), nullable=False),  # "left" or "right"
    Column("response_ms", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("instance", String(128), nullable=False),  # which app replica stored it
    UniqueConstraint("participant", "trial", name="one_vote_per_trial"),
)


@dataclass(frozen=True)
class Vote:
    participant: str
    trial: int
    image: str
    left: str
    right: str
    side: str  # "left" or "right"
    response_ms: int

    @property
    def chosen(self) -> str:
        return self.left if self.side == "left" else self.right

    @property
    def other(self) -> str:
        return self.right if self.side == "left" else self.left


def default_url() -> str:
    return f"sqlite:///{cache_root() / 'study.sqlite'}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, replicas can share
    cur.execute("PRAGMA synchronous=FULL")  # a committed vote survives even a power cut
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _retrying(action):
    """Run ``action()``; a locked or briefly unreachable database is tried again."""
    for attempt in range(RETRIES):
        try:
            return action()
        except OperationalError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)


class VoteStore:
    def __init__(self, url: str | None = None):
        try:
            url = make_url(url or default_url())
        except ArgumentError as exc:
            raise InputError(f"{url}: not a database URL ({exc})") from None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            url = url.set(database=str(Path(url.database).expanduser()))
        self.url = url
        self.engine = create_engine(url, pool_pre_ping=True)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        # Replicas starting together may race to create the table: checkfirst + a retry.
        _retrying(lambda: metadata.create_all(self.engine, checkfirst=True))

    def add(self, vote: Vote) -> bool:
        """Store a vote; True if stored now, False if this participant's trial was stored before."""
        if vote.side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {vote.side!r}")
        row = dict(participant=vote.participant, trial=vote.trial, image=vote.image, left=vote.left,
                   right=vote.right, chosen=vote.chosen, side=vote.side,
                   response_ms=int(vote.response_ms), created_at=datetime.now(timezone.utc),
                   instance=self.instance)

        def write() -> bool:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(votes_table).values(**row))
                return True
            except IntegrityError:
                return False

        return _retrying(write)

    def next_trial(self, participant: str) -> int:
        """Where a returning participant continues: one after their last stored vote."""
        def read() -> int:
            with self.engine.connect() as conn:
                last = conn.execute(select(func.max(votes_table.c.trial))
                                    .where(votes_table.c.participant == participant)).scalar()
            return 0 if last is None else last + 1

        return _retrying(read)

    def rows(self) -> list[dict]:
        """Every stored vote, oldest first, as plain dicts (the CSV export's columns)."""
        def read() -> list[dict]:
            with self.engine.connect() as conn:
                result = conn.execute(select(votes_table).order_by(votes_table.c.id))
                return [dict(r._mapping) for r in result]

        return _retrying(read)

    def votes(self) -> list[Vote]:
        return [Vote(r["participant"], r["trial"], r["image"], r["left"], r["right"], r["side"],
                     r["response_ms"]) for r in self.rows()]
