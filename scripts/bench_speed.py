"""Speed of the inference engines side by side, in one run: time per face of the real call
(Restorer.restore_face: mask + deblur, batch 1, 256x256) and faces per second through
`smfd restore --aligned` on a folder.

    .venv/bin/python scripts/bench_speed.py [--weights DIR] [--engines pytorch openvino openvino-int8]
        [--threads 1 2] [--load 0 2] [--runs 30] [--folder-faces 40]
        [--set KEY=VALUE ...] [--mask-set KEY=VALUE ...]

Faces: held-out test faces of celebamask_mini (degraded under the benchmark protocol). Each
configuration (engine x threads) is loaded once; the timed calls go round-robin over them, so all
see the same machine. --load K adds K busy processes (a pure-Python loop each) while timing, to see
how the thread settings hold up on a busy machine. Ratios are against PyTorch at the same threads
and load. Engine conversions (one-off, cached) are reported when they happen.

--set / --mask-set time random-init networks of a changed SMFD-UNet / mask-generator config (that
of --weights, or the shipped one) instead of the weights (speed does not depend on the weights'
values), e.g. the decoder a faster model would need: --set decoder=[128,64,32] shuffle_kernel=1.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from smfd import data
from smfd.cli import config_overrides, int_from, run_reported, script_parser
from smfd.engines import ENGINES
from smfd.errors import InputError
from smfd.images import write_png
from smfd.models import count_parameters
from smfd.paths import benchmark_data
from smfd.restorer import Restorer


def busy() -> None:
    while True:
        pass


def held_out(folder: str, n: int) -> list:
    """The first ``n`` held-out faces' records of the dataset ``folder``; refused when the split has fewer."""
    records = data.select(data.open_dataset(folder), "test")
    if n > len(records):
        raise InputError(f"{n} held-out faces needed (--folder-faces, at least 8): the held-out split of "
                         f"{folder} has {len(records)}")
    return records[:n]


def per_face(restorers: dict, faces: list[np.ndarray], runs: int) -> dict[str, list[float]]:
    """Seconds per restore_face call per configuration, interleaved."""
    times = {name: [] for name in restorers}
    for name, r in restorers.items():  # warm-up: first calls pay one-time setup
        for face in faces[:3]:
            r.restore_face(face)
    for i in range(runs):
        face = faces[i % len(faces)]
        for name, r in restorers.items():
            start = time.perf_counter()
            r.restore_face(face)
            times[name].append(time.perf_counter() - start)
    return times


def folder_rate(engine: str, folder: Path, n: int, weights: str | None) -> tuple[float, float]:
    """(faces/s after start-up, start-up seconds) of `smfd restore --aligned` on ``folder``: the
    command timed on 1 face and on all ``n``, each the quicker of two runs (a single start-up that
    happens to be slow would count against the faces); the difference is n - 1 faces."""
    def run(src: Path) -> float:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "smfd", "restore", "--aligned", str(src), out, "--engine", engine,
                   "--device", "cpu"] + (["--weights", weights] if weights else [])
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as one:
        first = sorted(folder.iterdir())[0]
        (Path(one) / first.name).symlink_to(first)
        t1 = min(run(Path(one)) for _ in range(2))
    tn = min(run(folder) for _ in range(2))
    # n faces quicker than 1 face: the machine's noise is larger than the faces' time, no rate
    return ((n - 1) / (tn - t1) if tn > t1 else None), t1


def random_weights(folder: Path, deblur: dict, mask: dict, base: str | None) -> str:
    """Random-init networks of the configs in ``base`` (default: the shipped ones) changed by
    ``deblur`` / ``mask``, saved as a weights folder."""
    import json

    from smfd.restorer import random_weights_like, weight_files

    for path, changes in zip(weight_files(folder), (mask, deblur)):
        print(f"random-init {path.stem}: {json.dumps(changes)}")
    try:  # the same seed each run: the same networks, so an engine converts them once
        return str(random_weights_like(folder, base, mask, deblur))
    except InputError:  # the weights folder's own message (an InputError is a ValueError too)
        raise
    except (TypeError, ValueError) as exc:  # an unknown field or a value of the wrong kind
        raise InputError(f"--set / --mask-set: {exc}") from None


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--data", default=str(benchmark_data()),
                        help="CelebAMask-HQ folder whose held-out faces are timed")
    parser.add_argument("--engines", nargs="+", choices=ENGINES[1:], default=["pytorch", "openvino", "openvino-int8"])
    parser.add_argument("--threads", type=int_from(1, 1024), nargs="+", default=[2])
    parser.add_argument("--load", type=int_from(0), nargs="+", default=[0], help="busy processes while timing")
    parser.add_argument("--runs", type=int_from(1), default=30)
    parser.add_argument("--folder-faces", type=int_from(0), default=40, help="0: skip the folder timing")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="SMFD-UNet config change")
    parser.add_argument("--mask-set", nargs="+", default=[], metavar="KEY=VALUE", help="mask generator change")
    args = parser.parse_args()
    if args.folder_faces == 1:  # the rate is the time of N faces less that of 1
        raise InputError("--folder-faces 1: give 0 (no folder timing) or at least 2")
    records = held_out(args.data, max(8, args.folder_faces))  # checked before any network loads or converts
    if args.set or args.mask_set:
        scratch = tempfile.TemporaryDirectory()
        args.weights = random_weights(Path(scratch.name), config_overrides(args.set),
                                      config_overrides(args.mask_set, "--mask-set"), args.weights)
    faces = [data.benchmark_pair(r)[0] for r in records]  # degraded under the benchmark protocol
    restorers = {}
    for threads in args.threads:
        for engine in args.engines:
            start = time.perf_counter()
            r = Restorer.from_pretrained(args.weights, "cpu", engine, threads)
            converted = getattr(r.engine, "converted_in", None)
            note = f"; converted once in {converted:.1f} s" if converted else ""
            print(f"loaded {r.engine.describe()} in {time.perf_counter() - start:.1f} s{note}")
            restorers[(engine, threads)] = r
    first = next(iter(restorers.values()))
    for name, model in (("mask generator", first.mask_model), ("SMFD-UNet", first.deblur_model)):
        print(f"{name:15s} {count_parameters(model)['total']:>10,} parameters")
    print(f"{os.cpu_count()} CPUs; {args.runs} timed faces per configuration after 3 warm-up faces\n")

    print("| added load | load average before | threads | engine | median ms/face | p10 | p90 | speed-up over PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for load in args.load:
        before = os.getloadavg()[0]
        hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(load)]
        for h in hogs:
            h.start()
        try:
            times = per_face(restorers, faces, args.runs)
        finally:
            for h in hogs:
                h.terminate()
        medians = {k: statistics.median(v) for k, v in times.items()}
        for (engine, threads), t in times.items():
            t = sorted(t)
            base = medians.get(("pytorch", threads))
            ratio = f"{base / medians[(engine, threads)]:.2f}x" if base else "-"
            p10, p90 = np.percentile(t, [10, 90]) * 1000  # interpolated: rank 9 of 10 was the slowest call
            print(f"| {load} | {before:.1f} | {threads} | {engine} | {medians[(engine, threads)] * 1000:.0f} | "
                  f"{p10:.0f} | {p90:.0f} | {ratio} |")

    if args.folder_faces:
        print(f"\n`smfd restore --aligned` on a folder of {args.folder_faces} held-out 256x256 faces "
              f"(default threads, no extra load; load average {os.getloadavg()[0]:.1f}):\n")
        print("| engine | faces/s after start-up | start-up + 1 face (s) | x PyTorch |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory() as folder:
            for k, face in enumerate(faces[: args.folder_faces]):
                write_png(Path(folder) / f"{k:03d}.png", face)
            rates = {e: folder_rate(e, Path(folder), args.folder_faces, args.weights) for e in args.engines}
        base = rates.get("pytorch", (None,))[0]
        for engine, (rate, startup) in rates.items():
            ratio = f"{rate / base:.2f}x" if rate and base else "-"
            print(f"| {engine} | {'-' if rate is None else f'{rate:.2f}'} | {startup:.1f} | {ratio} |")
        if None in (rate for rate, _ in rates.values()):
            print("\n-: the folder took no longer than one face (timing noise); time more --folder-faces")


if __name__ == "__main__":
    sys.exit(run_reported(main))
