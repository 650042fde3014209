"""``smfd eval --thesis-tables``: the thesis' tables 4.1-4.4, reproduced on any dataset with masks.

Every number comes from held-out faces (the dataset's test split, made into evaluation pairs
under the benchmark protocol in ``OUT/pairs``), except table 4.4, which reports each fold's
validation scores at its best epoch as the thesis does. What a table needs is trained with
:mod:`smfd.train` into ``OUT/runs/<name>`` under one training budget; a finished run is reused and an
interrupted one resumed, so the command can be run again (or pointed at existing runs with
``--runs``). Each table is printed beside the thesis' numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smfd import checkpoint, metrics
from smfd.errors import InputError
from smfd.models import ABLATIONS, count_parameters

from .compare import EvalOptions, evaluate
from .pairs import Pair, find_pairs, make_pairs
from .report import fmt

THESIS_41 = {"mask-generator": (64.84, 55.72, 5_416_159), "unet": (67.21, 58.00, 31_401_605),
             "unetplusplus": (68.20, 58.74, 36_643_333)}
# PSNR, SSIM %, MSE, NIQE, LPIPS, FID. The thesis does not say which GFPGAN version it ran.
THESIS_42 = {"codeformer": (22.59, 61.80, 417.59, 0.2565, 0.3211, 119.31),
             "restoreformer": (22.91, 63.28, 388.53, 0.2613, 0.3450, 129.25),
             "restoreformer++": (22.88, 62.65, 395.52, 0.2599, 0.2368, 89.70),
             "gfpgan-1.3": (22.99, 63.70, 381.64, 0.2644, 0.2295, 97.42),
             "gfpgan-1.4": (22.99, 63.70, 381.64, 0.2644, 0.2295, 97.42),
             "smfd-gt-mask": (24.37, 70.81, 330.19, 0.2664, 0.2933, 110.45),
             "smfd": (23.82, 69.34, 390.07, 0.2682, 0.3251, 123.54)}
THESIS_43 = {"no-mask": (22.46, 66.25), "plain-upsampling": (23.91, 69.22),
             "attention-transpose": (23.89, 70.20), "attention-pixelshuffle": (24.14, 70.42),
             "full": (24.37, 70.81)}
THESIS_44 = ((24.4046, 70.61), (24.1845, 69.50), (24.7568, 71.22), (24.2840, 70.27), (24.7137, 71.05))
ABLATION_TITLES = {
    "no-mask": "backbone without the semantic mask branch",
    "plain-upsampling": "+ mask branch, plain upsampling",
    "attention-transpose": "+ attention upsampling (transpose conv)",
    "attention-pixelshuffle": "+ attention upsampling (PixelShuffle)",
    "full": "+ post-processing block (SMFD-UNet)",
}
# Table 4.1's rows: run name -> (title, config overrides for ``smfd train mask``).
MASK_MODELS = {"mask-generator": ("mask generator (trained here)", {}),
               "unet": ("UNet (smp, resnet34 encoder, from scratch)", {"arch": "unet"}),
               "unetplusplus": ("UNet++ (smp, resnet34 encoder, from scratch)", {"arch": "unetplusplus"})}
TABLE_42_METHODS = ("codeformer", "restoreformer", "restoreformer++", "gfpgan-1.3", "gfpgan-1.4",
                    "smfd-gt-mask", "smfd", "blurry", "deconv")


@dataclass(frozen=True)
class Budget:
    """Training budget of every run; the defaults are the thesis' recipe (SPEC section 1)."""

    epochs: int = 50
    samples_per_epoch: int | None = None
    patch: int | None = None
    batch: int = 16
    val_faces: int | None = None
    folds: int = 5
    workers: int = 2
    deblur_config: dict = dataclasses.field(default_factory=dict)  # overrides for every SMFD-UNet run

    def differs_from_thesis(self) -> list[str]:
        thesis = Budget()
        return [f"{f.name}={getattr(self, f.name)} (thesis {getattr(thesis, f.name)})"
                for f in dataclasses.fields(self)
                if f.name != "workers" and getattr(self, f.name) != getattr(thesis, f.name)]


def train_run(task: str, data: str, out: Path, budget: Budget, device: str, config: dict | None = None,
              fold: int = 0) -> Path:
    """Train (or resume, or reuse when finished) one run; returns its best checkpoint."""
    from smfd.train import TrainSettings, train

    best = out / "best.safetensors"
    settings = TrainSettings(task=task, data=(data,), out=str(out), epochs=budget.epochs, batch=budget.batch,
                             patch=budget.patch, samples_per_epoch=budget.samples_per_epoch,
                             val_faces=budget.val_faces, workers=budget.workers, k=budget.folds, fold=fold,
                             config=dict(config or {}), device=device)
    print(f"[thesis tables] run {out.name}", flush=True)
    train(settings)
    if not best.is_file():
        raise InputError(f"{out}: training wrote no best.safetensors")
    return best


def segmentation_scores(model: torch.nn.Module, pairs: list[Pair]) -> tuple[float, float]:
    """Mean Dice and Jaccard (%) over the 5 groups, pixel counts summed over the pairs."""
    from smfd.restorer import Restorer

    restorer = Restorer(model, torch.nn.Identity(), next(model.parameters()).device)  # masks only
    score = metrics.SegmentationScore(5)
    for pair in pairs:
        blurry, _, truth = pair.load()
        score.add(restorer.mask(blurry), truth)
    return score.mean_dice() * 100, score.mean_jaccard() * 100


def deblur_scores(model: torch.nn.Module, pairs: list[Pair]) -> tuple[float, float]:
    """Mean PSNR and SSIM (%) of an SMFD-UNet variant guided by the ground-truth masks."""
    from smfd.restorer import Restorer

    restorer = Restorer(torch.nn.Identity(), model, next(model.parameters()).device)  # given masks
    psnr, ssim = [], []
    for pair in pairs:
        blurry, sharp, truth = pair.load()
        out = restorer.restore(blurry, truth)
        psnr.append(metrics.psnr(out, sharp))
        ssim.append(metrics.ssim(out, sharp))
    return float(np.mean(psnr)), float(np.mean(ssim)) * 100


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _num(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


# ---------------------------------------------------------------- the tables

def table_41(data: str, runs: Path, pairs: list[Pair], budget: Budget, options: EvalOptions) -> str:
    from smfd.restorer import weight_files

    device = _device(options)
    rows = []
    for key, (title, config) in MASK_MODELS.items():
        model = checkpoint.load(train_run("mask", data, runs / key, budget, device, config), device)
        dice, jaccard = segmentation_scores(model, pairs)
        t = THESIS_41[key]
        rows.append([title, _num(dice, 2), _num(jaccard, 2), f"{count_parameters(model)['total']:,}",
                     _num(t[0], 2), _num(t[1], 2), f"{t[2]:,}"])
    shipped = weight_files(options.weights.get("smfd"))[0]
    title = "mask generator (" + ("shipped weights" if "smfd" not in options.weights else str(shipped)) + ")"
    note = ""
    if shipped.is_file():
        model = checkpoint.load(shipped, device)
        dice, jaccard = segmentation_scores(model, pairs)
        rows.append([title, _num(dice, 2), _num(jaccard, 2),
                     f"{count_parameters(model)['total']:,}", "", "", ""])
    else:
        rows.append([title, "n/a", "n/a", "n/a", "", "", ""])
        note = f"The {title} is not available: {shipped} is absent.\n"
    return ("## Table 4.1: mask generator vs UNet vs UNet++ (held-out faces)\n\n"
            + _table(["model", "Dice %", "Jaccard %", "parameters", "thesis Dice %", "thesis Jaccard %",
                      "thesis parameters"], rows)
            + "\nDice and Jaccard: per group over the 5 groups (background included), pixel counts summed "
              "over the faces, then the mean. Parameters counted as Keras does (BatchNorm statistics "
              "included).\n" + note)


def table_42(pairs: list[Pair], out: Path, options: EvalOptions) -> str:
    results = {r["method"]: r for r in evaluate(pairs, list(TABLE_42_METHODS), out / "table4.2", options)}
    rows = []
    for name in TABLE_42_METHODS:
        r, t = results[name], THESIS_42.get(name)
        ssim = None if r.get("ssim") is None else r["ssim"] * 100
        ours = [fmt("psnr", r.get("psnr")) or "n/a", _num(ssim, 2)] + [
            fmt(k, r.get(k)) or "n/a" for k in ("mse", "niqe", "lpips", "fid")]
        theirs = ["" for _ in range(6)] if t is None else [_num(t[0], 2), _num(t[1], 2), _num(t[2], 2),
                                                           _num(t[3], 4), _num(t[4], 4), _num(t[5], 2)]
        rows.append([name, str(r["n"]), *ours, *theirs, "ok" if r["status"] == "ok" else "see below"])
    notes = "".join(f"- `{r['method']}`: {r['status']}\n" for r in results.values() if r["status"] != "ok")
    return ("## Table 4.2: zero-shot comparison (held-out faces)\n\n"
            + _table(["method", "n", "PSNR", "SSIM %", "MSE", "NIQE", "LPIPS", "FID", "thesis PSNR",
                      "thesis SSIM %", "thesis MSE", "thesis NIQE", "thesis LPIPS", "thesis FID", "status"], rows)
            + "\nThe thesis does not say which GFPGAN version it ran (its row is shown against both). Its "
              "NIQE values (about 0.26) are not on the scale of the standard NIQE (about 3-20 on faces); "
              "they cannot be compared with ours. Full results, samples and a chart: "
              f"{out / 'table4.2'}.\n\n" + notes)


def table_43(data: str, runs: Path, pairs: list[Pair], budget: Budget, options: EvalOptions) -> str:
    device = _device(options)
    rows = []
    for variant, overrides in ABLATIONS.items():
        model = checkpoint.load(train_run("deblur", data, runs / f"deblur-{variant}-fold0", budget, device,
                                          {**overrides, **budget.deblur_config}), device)
        psnr, ssim = deblur_scores(model, pairs)
        t = THESIS_43[variant]
        rows.append([ABLATION_TITLES[variant], _num(psnr, 2), _num(ssim, 2), _num(t[0], 2), _num(t[1], 2)])
    return ("## Table 4.3: ablation (held-out faces, ground-truth masks)\n\n"
            + _table(["configuration", "PSNR", "SSIM %", "thesis PSNR", "thesis SSIM %"], rows))


def table_44(data: str, runs: Path, budget: Budget, options: EvalOptions) -> str:
    device = _device(options)
    rows, scores = [], []
    for fold in range(budget.folds):
        best = train_run("deblur", data, runs / f"deblur-full-fold{fold}", budget, device,
                         budget.deblur_config, fold=fold)
        val = checkpoint.read_metadata(best)["info"]["scores"]
        scores.append((val["psnr"], val["ssim"] * 100))
        t = THESIS_44[fold] if fold < len(THESIS_44) else None
        rows.append([f"fold {fold + 1}", _num(scores[-1][0], 4), _num(scores[-1][1], 2),
                     _num(t and t[0], 4), _num(t and t[1], 2)])
    ours, thesis = np.array(scores), np.array(THESIS_44)
    # Population standard deviation: the thesis' 0.2289 dB is that of its five folds.
    rows.append(["mean ± SD", f"{ours[:, 0].mean():.4f} ± {ours[:, 0].std():.4f}",
                 f"{ours[:, 1].mean():.2f} ± {ours[:, 1].std():.2f}",
                 f"{thesis[:, 0].mean():.4f} ± {thesis[:, 0].std():.4f}",
                 f"{thesis[:, 1].mean():.2f} ± {thesis[:, 1].std():.2f}"])
    return (f"## Table 4.4: {budget.folds}-fold cross-validation (validation fold of each run, best epoch)\n\n"
            + _table(["fold", "PSNR", "SSIM %", "thesis PSNR", "thesis SSIM %"], rows))


def _device(options: EvalOptions) -> str:
    from smfd.runtime import pick_device

    return str(pick_device(options.device))


def reproduce(data: str, out: str | Path, tables: list[str], budget: Budget = Budget(),
              options: EvalOptions | None = None, test_faces: int | None = None,
              runs: str | Path | None = None) -> str:
    """Build the requested tables; writes ``OUT/thesis_tables.md`` and returns its text."""
    options = options or EvalOptions()
    out = Path(out)
    runs = Path(runs) if runs else out / "runs"
    pairs_dir = out / "pairs"
    if not (pairs_dir / "pairs.json").is_file():
        make_pairs(data, pairs_dir, limit=test_faces)
    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp", pairs_dir / "masks")[:test_faces]
    if not pairs:
        raise InputError(f"{data}: no held-out faces with masks to evaluate")
    parts = [f"# The thesis' tables, reproduced on {data}\n",
             f"Held-out faces: {len(pairs)} (test split, pairs in {pairs_dir}); runs in {runs}.\n"]
    changed = budget.differs_from_thesis()
    if changed:
        parts.append("**Reduced training budget** -- " + ", ".join(changed)
                     + ": trained numbers are not comparable with the thesis'.\n")
    builders = {"4.1": lambda: table_41(data, runs, pairs, budget, options),
                "4.2": lambda: table_42(pairs, out, options),
                "4.3": lambda: table_43(data, runs, pairs, budget, options),
                "4.4": lambda: table_44(data, runs, budget, options)}
    for key in sorted(set(tables)):
        parts.append(builders[key]())
    text = "\n".join(parts)
    (out / "thesis_tables.md").write_text(text)
    return text
