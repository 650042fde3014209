"""User-study storage in any SQLAlchemy database (SQLite by default, PostgreSQL for replicas on
several machines), built so that no vote is lost and none can be forged.

* The server issues every participant id (128 random bits) and deals the participant's whole
  sequence of trials (photo, method left, method right) at the first Start, from the operating
  system's random source, into the database. Nothing a client sends or can compute decides a
  pairing or a side.
* A vote names a trial of the participant bound to the browser session; it is stored only if
  that trial was dealt to them, is the next one they have not answered, and has no vote yet,
  in one conditional UPDATE (so two replicas or a double click cannot store it twice). The
  methods stored with the vote are the ones the server dealt, never the client's.
* Every refusal is counted per kind (see REFUSALS) for the admin view; counters, not rows, so
  that a flood of forged calls cannot fill the disk, added up in memory and written at most once
  every FLUSH_SECONDS, so that such a flood does not hold up the votes with a write per call.
* Every string column is bounded by a CHECK constraint as well as its declared length, so that
  SQLite (which ignores VARCHAR lengths) refuses an oversized value like PostgreSQL does.
* Every vote is its own committed transaction; SQLite runs in WAL mode with synchronous=FULL and
  a busy timeout, so replicas on one machine can share the file. A locked or unreachable
  database is retried with back-off for about RETRY_SECONDS before StoreUnavailable is raised.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (CheckConstraint, Column, DateTime, Integer, MetaData, String, Table,
                        UniqueConstraint, and_, create_engine, event, func, insert, select, update)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError,
                            ProgrammingError)

from smfd.batch import check_folder
from smfd.errors import InputError, first_line
from smfd.paths import cache_root

RETRY_SECONDS = 20.0  # how long a vote waits for a locked or restarting database
FLUSH_SECONDS = 1.0  # refusals counted since the last write are written this long after the first
ID_LENGTH = 32  # hex digits of a participant id
SIDES = ("left", "right")
# Refusal kinds, in the order the admin view lists them.
REFUSALS = {
    "forged": "votes for no trial dealt to the caller (no study session, or a trial that does not exist)",
    "out-of-order": "votes for a later trial than the one shown, or than the participant's next one",
    "duplicate": "second votes for an answered trial from the same browser session (double submit)",
    "replayed": "votes for a trial already answered from another session (a copied request, a second tab)",
    "unknown-id": "returning participant ids the server never issued (a new id was given instead)",
    "admin-token": "wrong admin tokens",
    "rate-limited": "admin attempts refused by the rate limit",
    "too-many-ids": "new participant ids refused to an address that took too many within a minute",
}
_HEX_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")


def _bounded(name: str, length: int, **kw) -> Column:
    """A string column whose length every backend enforces."""
    return Column(name, String(length), CheckConstraint(f"length(\"{name}\") <= {length}"), **kw)


metadata = MetaData()
participants_table = Table(
    "study_participants", metadata,
    _bounded("id", ID_LENGTH, primary_key=True),  # server-issued, random: nothing personal
    Column("created_at", DateTime(timezone=True), nullable=False),
    _bounded("instance", 128, nullable=False),  # which app replica issued it
)
trials_table = Table(
    "study_trials", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _bounded("participant", ID_LENGTH, nullable=False),
    Column("trial", Integer, nullable=False),  # position in the participant's sequence
    _bounded("image", 255, nullable=False),
    _bounded("left", 64, nullable=False),  # method shown on the left
    _bounded("right", 64, nullable=False),
    # The vote: NULL until answered, then set once by a conditional UPDATE.
    _bounded("side", 5, nullable=True),  # "left" or "right"
    _bounded("chosen", 64, nullable=True),  # the method picked as better
    Column("response_ms", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=True),  # when the vote was stored
    _bounded("instance", 128, nullable=True),  # which replica stored it
    _bounded("session", 16, nullable=True),  # digest of the browser session that voted
    UniqueConstraint("participant", "trial", name="one_trial_per_position"),
)
refusals_table = Table(
    "study_refusals", metadata,
    _bounded("kind", 16, primary_key=True),
    Column("count", Integer, nullable=False),
)
# What the votes are about (weights, photos, methods): one row. Votes on other restorations must
# not be pooled with them, so a database serves one setup only (VoteStore.bind).
setup_table = Table(
    "study_setup", metadata,
    _bounded("key", 8, primary_key=True),  # always "setup"
    _bounded("fingerprint", 64, nullable=False),
    _bounded("description", 1000, nullable=False),
)


class StoreUnavailable(RuntimeError):
    """The database could not be reached within RETRY_SECONDS."""


@dataclass(frozen=True)
class Vote:
    participant: str
    trial: int
    image: str
    left: str
    right: str
    side: str  # "left" or "right"
    response_ms: int

    @classmethod
    def from_row(cls, row: dict) -> Vote:
        return cls(row["participant"], row["trial"], row["image"], row["left"], row["right"],
                   row["side"], row["response_ms"])

    @property
    def chosen(self) -> str:
        return self.left if self.side == "left" else self.right

    @property
    def other(self) -> str:
        return self.right if self.side == "left" else self.left


@dataclass(frozen=True)
class Trial:
    participant: str
    index: int
    image: str  # file name within the study's photo folder
    left: str  # method names: stored with the vote, never shown to the participant
    right: str


@dataclass(frozen=True)
class Outcome:
    """What became of a vote: ``stored`` or a key of REFUSALS."""
    status: str
    next_index: int | None = None  # the participant's next unanswered trial (None: all done)

    @property
    def stored(self) -> bool:
        return self.status == "stored"


def default_url(fingerprint: str) -> str:
    """The votes file of one study setup in the cache folder: a new model or other photos start a
    file of their own, and the earlier votes stay in theirs."""
    return f"sqlite:///{cache_root() / 'study' / f'votes-{fingerprint[:16]}.sqlite'}"


def valid_id(value) -> bool:
    return isinstance(value, str) and _HEX_ID.fullmatch(value) is not None


def _next_trial(participant: str):
    """The query of a participant's first unanswered trial (NULL when all are answered)."""
    return select(func.min(trials_table.c.trial)).where(trials_table.c.participant == participant,
                                                        trials_table.c.side.is_(None))


def deal(participant: str, images: list[str], pairs: list[tuple[str, str]]) -> list[Trial]:
    """A participant's sequence: every photo once in random order, the method pairs in turn
    (so each pair comes up equally often), each on a random side (from the system's randomness:
    a participant cannot predict which side is which)."""
    rng = random.SystemRandom()
    order = rng.sample(images, len(images))
    pair_order = rng.sample(pairs, len(pairs))
    trials = []
    for k, image in enumerate(order):
        a, b = pair_order[k % len(pair_order)]
        if rng.random() < 0.5:
            a, b = b, a
        trials.append(Trial(participant, k, image, a, b))
    return trials


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, replicas can share
    cur.execute("PRAGMA synchronous=FULL")  # a committed vote survives even a power cut
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# Operational errors no retry mends: a file that cannot be written, a database never created, a
# login refused (the drivers' own words, SQLite's and PostgreSQL's)
LASTING = ("readonly database", "does not exist", "authentication failed", "no password supplied")


def _transient(exc: DBAPIError) -> bool:
    """A lock, a lost connection or a server that is (re)starting: worth trying again."""
    if any(words in str(exc.orig) for words in LASTING):
        return False
    return isinstance(exc, OperationalError) or exc.connection_invalidated


def _retrying(action, seconds: float = RETRY_SECONDS):
    deadline, pause = time.monotonic() + seconds, 0.05
    while True:
        try:
            return action()
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not _transient(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise StoreUnavailable(f"the study database is unreachable ({type(exc.orig).__name__}: "
                                       f"{first_line(exc.orig)})") from exc
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _check_length(name: str, value: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


class VoteStore:
    def __init__(self, url: str, retry_seconds: float = RETRY_SECONDS):
        given = url
        try:
            url = make_url(url)
        except ArgumentError as exc:
            raise InputError(f"{url}: not a database URL ({exc})") from None
        backend = url.get_backend_name()
        if backend == "sqlite" and url.database in (None, "", ":memory:"):  # each thread its own, empty
            raise InputError(f"{given}: an in-memory database, which loses every vote (and "
                             "the app's threads would each see another one); give sqlite:///FILE")
        if backend == "sqlite":
            path = Path(url.database).expanduser()
            if path.is_dir():
                raise InputError(f"{url.render_as_string()}: {path} is a folder, not a database file")
            # a file on the way, or a folder that cannot be written (--study-db's, or the cache's by default)
            check_folder(path.parent, "the study database's folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # votes are nobody else's business: owner-only from the start
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            url = url.set(database=str(path))
        self.url, self.retry_seconds = url, retry_seconds
        self._refused, self._flushing, self._lock = Counter(), None, threading.Lock()
        atexit.register(self._flush)  # a stop (Ctrl+C, SIGTERM) writes what is counted
        connect_args = {"connect_timeout": 5} if backend == "postgresql" else {}
        try:
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        except ModuleNotFoundError as exc:
            raise InputError(f"{url.render_as_string()}: its driver is not installed ({exc})") from None
        except NoSuchModuleError:
            raise InputError(f"{url.render_as_string()}: not a kind of database SQLAlchemy knows "
                             f"({url.drivername}); use sqlite:///FILE or postgresql://...") from None
        if backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.instance = f"{socket.gethostname()}:{os.getpid()}"[:128]
        # Replicas starting together may race to create the tables: checkfirst + a retry.
        try:
            self._retry(self._create)
        except StoreUnavailable as exc:
            raise InputError(f"{url.render_as_string()}: {exc}") from None
        except DBAPIError as exc:  # e.g. a file that is not a database: no retry helps
            raise InputError(f"{url.render_as_string()}: not a usable study database ({first_line(exc.orig)})") from None

    def _retry(self, action):
        return _retrying(action, self.retry_seconds)

    def _create(self) -> None:
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (IntegrityError, ProgrammingError):  # PostgreSQL: another replica created them between
            metadata.create_all(self.engine, checkfirst=True)  # the check and CREATE; now they are found
        with self.engine.begin() as conn:
            have = set(conn.execute(select(refusals_table.c.kind)).scalars())
        for kind in REFUSALS.keys() - have:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(refusals_table).values(kind=kind, count=0))
            except IntegrityError:  # another replica inserted it meanwhile
                pass
        # A database that opens but cannot be written (a read-only file) is named now, not at every Start.
        with self.engine.begin() as conn:
            conn.execute(update(refusals_table).where(refusals_table.c.kind == "forged")
                         .values(count=refusals_table.c.count))

    def bind(self, fingerprint: str, description: str) -> None:
        """Claim this database for one study setup (app.study.setup_of); a database that holds the
        votes of another setup is refused, so that votes on other restorations are never pooled."""
        def claim() -> str:
            with self.engine.begin() as conn:
                row = conn.execute(select(setup_table).where(setup_table.c.key == "setup")).mappings().first()
                if row is None:
                    if conn.execute(select(func.count()).select_from(participants_table)).scalar():
                        return "participants from before studies were recorded, of an unknown setup"
                    conn.execute(insert(setup_table).values(key="setup", fingerprint=fingerprint,
                                                            description=description[:1000]))
                    return fingerprint
                if row["fingerprint"] != fingerprint:
                    return row["description"]
                return fingerprint

        try:
            try:
                found = self._retry(claim)
            except IntegrityError:  # another replica claimed it meanwhile: compare with its claim
                found = self._retry(claim)
        except StoreUnavailable as exc:
            raise InputError(f"{self.url.render_as_string()}: {exc}") from None
        if found != fingerprint:
            raise InputError(f"{self.url.render_as_string()}: holds the votes of another study ({found}); this "
                             f"one is {description}. Give another --study-db to keep both apart")

    # ------------------------------------------------------------ participants
    def new_participant(self, images: list[str], pairs: list[tuple[str, str]]) -> str:
        """Issue an id and deal its sequence, in one transaction."""
        participant = os.urandom(ID_LENGTH // 2).hex()
        trials = deal(participant, images, pairs)
        for t in trials:
            _check_length("image name", t.image, 255)
            _check_length("method name", t.left, 64)
            _check_length("method name", t.right, 64)
        rows = [dict(participant=participant, trial=t.index, image=t.image, left=t.left, right=t.right)
                for t in trials]

        def write() -> str:
            with self.engine.begin() as conn:
                conn.execute(insert(participants_table).values(
                    id=participant, created_at=datetime.now(timezone.utc), instance=self.instance))
                conn.execute(insert(trials_table), rows)
            return participant

        return self._retry(write)

    def known(self, participant) -> bool:
        """Whether this id was issued here (anything else is refused before a query)."""
        if not valid_id(participant):
            return False

        def read() -> bool:
            with self.engine.connect() as conn:
                return conn.execute(select(participants_table.c.id)
                                    .where(participants_table.c.id == participant)).first() is not None

        return self._retry(read)

    def next_index(self, participant: str) -> int | None:
        """The participant's first unanswered trial (None when all are answered)."""
        def read():
            with self.engine.connect() as conn:
                return conn.execute(_next_trial(participant)).scalar()

        return self._retry(read)

    def trial(self, participant: str, index: int) -> Trial | None:
        def read():
            with self.engine.connect() as conn:
                return conn.execute(select(trials_table).where(
                    trials_table.c.participant == participant, trials_table.c.trial == index)).first()

        row = self._retry(read)
        return None if row is None else Trial(row.participant, row.trial, row.image, row.left, row.right)

    # ------------------------------------------------------------ votes
    def vote(self, participant, index, side: str, response_ms: int, session: str = "") -> Outcome:
        """Store the participant's answer to their trial ``index``, or say why not (the refusal
        is counted). ``session``: a short digest of the browser session, to tell a double submit
        from a replay."""
        if side not in SIDES:
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        if not valid_id(participant) or not isinstance(index, int) or not 0 <= index < 1_000_000:
            self.refuse("forged")
            return Outcome("forged")
        session = session[:16]
        ms = max(0, min(int(response_ms), 86_400_000))

        t = trials_table

        def decide(conn) -> str:
            row = conn.execute(select(t.c.left, t.c.right, t.c.side, t.c.session).where(
                t.c.participant == participant, t.c.trial == index)).first()
            if row is None:
                return "forged"
            if row.side is not None:
                return "duplicate" if session and row.session == session else "replayed"
            earlier = conn.execute(select(func.count()).select_from(t).where(
                t.c.participant == participant, t.c.trial < index, t.c.side.is_(None))).scalar()
            if earlier:
                return "out-of-order"
            chosen = row.left if side == "left" else row.right
            done = conn.execute(update(t).where(
                and_(t.c.participant == participant, t.c.trial == index, t.c.side.is_(None))
            ).values(side=side, chosen=chosen, response_ms=ms, created_at=datetime.now(timezone.utc),
                     instance=self.instance, session=session or None))
            if done.rowcount != 1:  # another request stored it between our read and write: whose?
                winner = conn.execute(select(t.c.session).where(
                    t.c.participant == participant, t.c.trial == index)).scalar()
                return "duplicate" if session and winner == session else "replayed"
            return "stored"

        def write() -> Outcome:
            # the next trial read in the same transaction: a failure after the commit would say
            # "not saved" of a vote that was, and make its honest retry a refusal
            with self.engine.begin() as conn:
                status = decide(conn)
                following = conn.execute(_next_trial(participant)).scalar()
            return Outcome(status, following)

        outcome = self._retry(write)
        if not outcome.stored:
            self.refuse(outcome.status)
        return outcome

    def refuse(self, kind: str) -> None:
        """Count a refusal: in memory now, in the database within FLUSH_SECONDS or when the app
        stops (a crash loses at most those counts; never raises: counting must not turn a refusal
        into an error)."""
        with self._lock:
            self._refused[kind] += 1
            if self._flushing is None:
                self._flushing = threading.Timer(FLUSH_SECONDS, self._flush)
                self._flushing.daemon = True
                self._flushing.start()

    def _flush(self) -> None:
        """Write the refusals counted since the last write."""
        with self._lock:
            counted, self._refused, self._flushing = self._refused, Counter(), None

        def write():
            with self.engine.begin() as conn:
                for kind, n in counted.items():
                    conn.execute(update(refusals_table).where(refusals_table.c.kind == kind)
                                 .values(count=refusals_table.c.count + n))

        try:
            if counted:
                _retrying(write, 2.0)
        except (StoreUnavailable, DBAPIError):  # kept for the next write
            with self._lock:
                self._refused.update(counted)

    def refusals(self) -> dict[str, int]:
        self._flush()  # with this replica's own counted since the last write

        def read():
            with self.engine.connect() as conn:
                return dict(conn.execute(select(refusals_table.c.kind, refusals_table.c.count)).all())

        counts = self._retry(read)
        return {kind: counts.get(kind, 0) for kind in REFUSALS}

    # ------------------------------------------------------------ reading votes
    def rows(self) -> list[dict]:
        """Every stored vote, in the order stored, as plain dicts (the CSV export's columns)."""
        t = trials_table

        def read() -> list[dict]:
            with self.engine.connect() as conn:
                result = conn.execute(select(t).where(t.c.side.is_not(None))
                                      .order_by(t.c.created_at, t.c.id))
                return [dict(r._mapping) for r in result]

        return self._retry(read)
