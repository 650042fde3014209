"""Benchmark: time per face of the shipped pipeline (mask + deblur, batch 1, 256x256) and the
parameter counts of both networks.

    .venv/bin/python scripts/bench_speed.py [--weights DIR] [--device cpu] [--runs 20] [--threads N]

Prints the median and the 10th/90th percentiles over --runs timed runs after 3 warm-up runs, with and
without bf16 autocast (used automatically where the CPU supports bf16 natively).
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch

from smfd.models import count_parameters
from smfd.restorer import Restorer
from smfd.runtime import native_bf16


def time_runs(fn, runs: int) -> list[float]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    restorer = Restorer.from_pretrained(args.weights, args.device)
    for name, model in (("mask generator", restorer.mask_model), ("SMFD-UNet", restorer.deblur_model)):
        print(f"{name:15s} {count_parameters(model)['total']:>10,} parameters")
    face = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    print(f"device {args.device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    modes = ["1", "0"] if native_bf16.__wrapped__("cpu") else ["0"]
    for mode in modes:
        os.environ["SMFD_BF16"] = mode
        native_bf16.cache_clear()
        label = "bf16 autocast" if mode == "1" else "float32"
        groups = restorer.mask(face)
        steps = {
            "mask": lambda: restorer.mask(face),
            "deblur": lambda: restorer.deblur_at_work_size(face, groups),
            "mask + deblur": lambda: restorer.restore(face),
        }
        for step, fn in steps.items():
            t = sorted(time_runs(fn, args.runs))
            p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10]
            print(f"{label:14s} {step:14s} median {statistics.median(t) * 1000:7.1f} ms "
                  f"(p10 {p10 * 1000:.1f}, p90 {p90 * 1000:.1f})")


if __name__ == "__main__":
    main()
