"""Benchmark: training samples per second from smfd.data.FaceDataset through torch's DataLoader.

    .venv/bin/python scripts/bench_loader.py [--data DIR] [--workers 0 1 2] [--samples 96]

DIR defaults to celebamask_mini of the shared data ($SMFD_SHARED_DATA, else ../shared/data beside
the project folder).

Prints samples/s for each worker count and the CPU use of the whole process tree, so one can see
whether loading keeps the cores busy.
"""

import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from smfd import data
from smfd.cli import int_from, run_reported, script_parser
from smfd.paths import benchmark_data


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--data", default=str(benchmark_data()))
    parser.add_argument("--workers", type=int_from(0), nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int_from(1), default=96)
    parser.add_argument("--patch", type=int_from(8), default=None)
    args = parser.parse_args()
    records = data.select(data.open_dataset(args.data), "train")
    print(f"{len(records)} training faces from {args.data}, {os.cpu_count()} CPUs")
    for workers in args.workers:
        dataset = data.FaceDataset(records, patch=args.patch)
        loader = DataLoader(dataset, batch_size=16, num_workers=workers,
                            sampler=range(args.samples))
        start_cpu, start = _cpu_seconds(), time.perf_counter()
        n = sum(len(b["blurry"]) for b in loader)
        wall = time.perf_counter() - start
        busy = (_cpu_seconds() - start_cpu) / wall
        print(f"workers={workers}: {n / wall:6.1f} samples/s, {busy:.2f} cores busy")


def _cpu_seconds() -> float:
    """CPU time of this process and its (finished) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    sys.exit(run_reported(main))
