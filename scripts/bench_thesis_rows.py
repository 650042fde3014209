"""Benchmark: training throughput of each kind of trained row of ``smfd eval --thesis-tables``,
and the wall time a budget would take per row.

    .venv/bin/python scripts/bench_thesis_rows.py [--data DIR] [--budget 8192] [--batches 8] [--repeats 3]

For each row kind it trains ``--batches`` batches of real degraded faces (the budget's crops, batch
and data loading) ``--repeats`` times and prints the median samples/s; the timing starts once the
loader's prefetched batches are used up, so that making the degraded samples counts as in a real
run (where making them is slower than the network, timing prefetched batches overstates the
rate: on 128x128 crops the mask generator's real run went at about 10 samples/s where that
measured 25); it
times one validation the same way, and combines both into minutes per row for ``--budget``.
The figures are this machine's as it is now: pause other work for numbers to publish.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import torch

from eval.thesis import MASK_MODELS, Budget
from smfd.cli import int_from, run_reported, script_parser
from smfd.paths import benchmark_data
from smfd.models import ABLATIONS
from smfd.train import Trainer, TrainSettings

KINDS = {**{f"mask: {k}": ("mask", c) for k, (_, c) in MASK_MODELS.items()},
         **{f"deblur: {k}": ("deblur", ABLATIONS[k]) for k in ("no-mask", "full")}}


def main() -> None:
    p = script_parser(__doc__)
    p.add_argument("--data", default=str(benchmark_data()))
    p.add_argument("--budget", type=int_from(1), default=Budget().samples)
    p.add_argument("--batches", type=int_from(1), default=8)
    p.add_argument("--repeats", type=int_from(1), default=3)
    args = p.parse_args()
    if args.budget < Budget().samples_per_epoch:  # Budget's own message names an option this script lacks
        p.error(f"--budget must be at least one epoch's {Budget().samples_per_epoch} samples, got {args.budget}")
    budget = Budget(samples=args.budget)
    print(f"torch threads {torch.get_num_threads()}; budget {budget.describe()}")
    for label, (task, config) in KINDS.items():
        if task == "deblur":  # the rows as the budget trains them (e.g. residual)
            config = {**config, **budget.deblur_config}
        with tempfile.TemporaryDirectory() as out:
            # DataLoader prefetches 2 batches per worker and refills while the warm-up runs: use
            # up twice that before the clock starts.
            warm = 4 * budget.workers + 1
            settings = TrainSettings(task=task, data=(args.data,), out=out, batch=budget.batch,
                                     patch=budget.patch_for(task),
                                     samples_per_epoch=budget.batch * (warm + args.batches),
                                     val_faces=budget.val_faces, workers=budget.workers, config=config, device="cpu")
            trainer = Trainer(settings)
            _, _, train, val = trainer.loaders()
            rates, val_times = [], []
            for _ in range(args.repeats):
                batches = iter(train)
                for _ in range(warm):
                    step(trainer, next(batches))
                start = time.perf_counter()
                for batch in batches:
                    step(trainer, batch)
                rates.append(args.batches * budget.batch / (time.perf_counter() - start))
                start = time.perf_counter()
                trainer.validate(val)
                val_times.append(time.perf_counter() - start)
        rate, val_s = statistics.median(rates), statistics.median(val_times)
        minutes = (budget.samples / rate + budget.epochs() * val_s) / 60
        print(f"{label:28s} {rate:6.2f} samples/s (runs {', '.join(f'{r:.2f}' for r in rates)}); "
              f"validation {val_s:5.1f} s; {budget.samples:,} samples -> {minutes:5.1f} min per row")


def step(trainer: Trainer, batch: dict) -> None:
    trainer.net.train()
    _, loss = trainer.forward(batch, trainer.net, 0.0, None)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()


if __name__ == "__main__":
    sys.exit(run_reported(main))
