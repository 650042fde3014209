"""Load test of the user study: many simulated participants at once, driving the same events the
browser uses (raw queue calls, app/study_client.py), against a real `smfd demo` started here on
127.0.0.1 (or a running one, --url).

    .venv/bin/python scripts/load_study.py [--participants 60] [--duration 60] [--think 1 3]
        [--photos DIR] [--weights DIR | --random-weights] [--study-db URL] [--url URL] [--flood N]

Every participant presses Start, then votes photo after photo, pausing a random --think time
(seconds, uniform) between seeing a pair and clicking, until the sequence ends or --duration is
over. Prints the latency of Start and of a vote (p50 / p95 / max, from the click to the next
screen) and the throughput; every vote is checked in the answer (the next trial, no error).

--flood N sends N raw votes with no study session (each from a session hash of its own, as a
script can) all at once, 5 s into the run, and prints the latency of the participants' votes
clicked in the 20 s after it apart, and how many of the N the app did not take into its queue.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.demo_process import STUDY_READY, DemoNotReady, DemoProcess
from app.study_client import CallFailed, StudyClient
from smfd.cli import int_from, number_in, run_reported, script_parser

ROOT = Path(__file__).resolve().parents[1]
FLOOD_AT, FLOOD_WINDOW = 5.0, 20.0  # seconds into the run; seconds after it whose votes are shown apart


def start_app(args, work: Path) -> DemoProcess:
    """`smfd demo` on a free port; returns once its study is ready."""
    from smfd.paths import shared_data

    photos = args.photos or str(shared_data() / "realworld" / "cropped")
    db = args.study_db or f"sqlite:///{work / 'study.sqlite'}"
    options = ["--study-images", photos, "--study-db", db, "--study-new-ids", str(max(60, args.participants))]
    if args.weights:
        options += ["--weights", args.weights]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SMFD_ADMIN_TOKEN": "load-test"}
    demo = DemoProcess(options, env, work / "app.log", cwd=ROOT)
    try:
        demo.start(timeout=args.start_timeout, ready=STUDY_READY)
    except DemoNotReady as exc:
        sys.exit(str(exc))
    return demo


async def participant(url: str, config: dict, args, end: float, starts: list, votes: list,
                      errors: list, rng: random.Random) -> None:
    async with StudyClient(url, timeout=args.call_timeout) as client:
        await client.connect(config)  # the page's config, fetched once for everybody
        await asyncio.sleep(rng.uniform(0, args.think[1]))  # people do not all click at once
        t = time.perf_counter()
        try:
            screen = await client.start()
        except (CallFailed, httpx.HTTPError, OSError) as exc:
            errors.append(f"start: {exc}")
            return
        starts.append(time.perf_counter() - t)
        while screen.trial and time.time() < end:
            await asyncio.sleep(rng.uniform(*args.think))
            clicked, t = time.time(), time.perf_counter()
            try:
                following = await client.vote(rng.choice(["left", "right"]), screen.trial)
            except (CallFailed, httpx.HTTPError, OSError) as exc:
                errors.append(f"vote: {exc}")
                return
            votes.append((clicked, time.perf_counter() - t))
            expected = str(int(screen.trial) + 1)
            if following.trial not in (expected, "") or following.warnings:
                errors.append(f"vote on trial {screen.trial}: got {following.trial!r} {following.warnings}")
                return
            screen = following


def summary(name: str, times: list[float]) -> str:
    if not times:
        return f"{name}: none"
    times = sorted(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return (f"{name}: n={len(times)}  p50={statistics.median(times) * 1000:.0f} ms  "
            f"p95={p95 * 1000:.0f} ms  max={times[-1] * 1000:.0f} ms")


async def flood(url: str, probe: StudyClient, n: int) -> int:
    """``n`` votes for the left side from sessions that never pressed Start, posted at once: past
    the first few per address the app's gate answers them itself (429) before the study's queue,
    and refuses those few in the queue. Returns how many were not taken into the queue."""
    await asyncio.sleep(FLOOD_AT)
    fn_index, trigger = probe.fns["study-pick-left"]
    url = f"{url.rstrip('/')}/gradio_api/queue/join"

    async def one() -> bool:
        try:
            joined = await probe.http.post(url, json={"data": [None, "0"], "fn_index": fn_index,
                                                      "trigger_id": trigger, "event_data": None,
                                                      "session_hash": secrets.token_hex(6)})
            return joined.status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    return n - sum(await asyncio.gather(*[one() for _ in range(n)]))


async def drive(url: str, args) -> None:
    async with StudyClient(url) as probe:
        config = await probe.connect()
        starts, votes, errors = [], [], []
        rng = random.Random(args.seed)
        began = time.time()
        end = began + args.duration
        done = await asyncio.gather(*[participant(url, config, args, end, starts, votes, errors,
                                                  random.Random(rng.random())) for _ in range(args.participants)],
                                    *([flood(url, probe, args.flood)] if args.flood else []))
    wall = time.time() - began
    print(f"{args.participants} participants, think time {args.think[0]:g}-{args.think[1]:g} s, "
          f"{wall:.1f} s in all")
    print(summary("start", starts))
    print(summary("vote ", [took for _, took in votes]))
    if args.flood:
        hit = [took for clicked, took in votes if 0 <= clicked - began - FLOOD_AT <= FLOOD_WINDOW]
        print(summary(f"vote clicked in the {FLOOD_WINDOW:g} s after {args.flood} refused raw calls", hit))
        print(f"raw calls the app did not queue: {done[-1]} of {args.flood}")
    print(f"throughput: {len(votes) / wall:.1f} votes/s; errors: {len(errors)}")
    for e in errors[:10]:
        print("  ", e)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--participants", type=int_from(1, 500), default=60, help="1..500 (default 60)")
    parser.add_argument("--duration", type=number_in(0, 3600, low_open=True), default=60.0,
                        help="seconds of voting at most (default 60)")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                        help="seconds a participant looks at a pair before clicking (uniform)")
    parser.add_argument("--photos", default=None, help="study photos (default: realworld/cropped of the shared data)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    which.add_argument("--random-weights", action="store_true", help="random networks (no shipped weights needed)")
    parser.add_argument("--study-db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--url", default=None, help="drive this running app instead of starting one")
    parser.add_argument("--seed", type=int_from(0), default=0)
    parser.add_argument("--flood", type=int_from(0, 100_000), default=0, metavar="N",
                        help=f"N refused raw votes at once, {FLOOD_AT:g} s into the run (default 0: none)")
    parser.add_argument("--call-timeout", type=number_in(0, 3600, low_open=True), default=60.0,
                        help="seconds one call may take (default 60)")
    parser.add_argument("--start-timeout", type=number_in(0, 3600, low_open=True), default=600.0,
                        help="seconds the app may take to get its study ready (default 600)")
    args = parser.parse_args()
    if not 0 <= args.think[0] <= args.think[1] <= 600:
        parser.error(f"--think MIN MAX must satisfy 0 <= MIN <= MAX <= 600 s, got {args.think[0]:g} {args.think[1]:g}")
    if args.url and not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must be the app's http:// or https:// address, got {args.url!r}")
    # the app at --url runs its own photos, weights and database: these would go unread
    unread = [f"--{k.replace('_', '-')}" for k in ("photos", "weights", "random_weights", "study_db", "start_timeout")
              if getattr(args, k) != parser.get_default(k)]
    if args.url and unread:
        parser.error(f"{', '.join(unread)}: {'they start' if len(unread) > 1 else 'it starts'} an app, which --url "
                     "does not (the app there has its own)")
    if args.photos and not Path(args.photos).is_dir():  # found now, not by the app after its start
        parser.error(f"--photos {args.photos}: folder not found")
    if args.url:
        asyncio.run(drive(args.url, args))
        return
    with tempfile.TemporaryDirectory(prefix="smfd-load-") as tmp:
        if args.random_weights:
            from smfd.restorer import save_random_weights

            args.weights = str(save_random_weights(Path(tmp) / "weights"))
        demo = start_app(args, Path(tmp))
        try:
            asyncio.run(drive(demo.url, args))
        finally:
            demo.stop()


if __name__ == "__main__":
    sys.exit(run_reported(main))
