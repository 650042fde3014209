"""Benchmark: training throughput of each kind of trained row of ``smfd eval --thesis-tables``,
and the wall time a budget would take per row.

    .venv/bin/python scripts/bench_thesis_rows.py [--data DIR] [--budget 8192] [--batches 4] [--repeats 3]

For each row kind it trains ``--batches`` batches of real degraded faces (the budget's crops, batch
and data loading, after one warm-up batch) ``--repeats`` times and prints the median samples/s; it
times one validation the same way, and combines both into minutes per row for ``--budget``.
The figures are this machine's as it is now: pause other work for numbers to publish.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from eval.thesis import MASK_MODELS, Budget
from smfd.paths import shared_data
from smfd.models import ABLATIONS
from smfd.train import Trainer, TrainSettings

KINDS = {**{f"mask: {k}": ("mask", c) for k, (_, c) in MASK_MODELS.items()},
         **{f"deblur: {k}": ("deblur", ABLATIONS[k]) for k in ("no-mask", "full")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(shared_data() / "celebamask_mini"))
    p.add_argument("--budget", type=int, default=Budget().samples)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    budget = Budget(samples=args.budget)
    print(f"torch threads {torch.get_num_threads()}; budget {budget.describe()}")
    for label, (task, config) in KINDS.items():
        with tempfile.TemporaryDirectory() as out:
            settings = TrainSettings(task=task, data=(args.data,), out=out, batch=budget.batch, patch=budget.patch,
                                     samples_per_epoch=budget.batch * (args.batches + 1),
                                     val_faces=budget.val_faces, workers=budget.workers, config=config, device="cpu")
            trainer = Trainer(settings)
            _, _, train, val = trainer.loaders()
            rates, val_times = [], []
            for _ in range(args.repeats):
                batches = iter(train)
                step(trainer, next(batches))  # warm-up
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
    main()
