"""``smfd eval --thesis-tables``: the thesis' tables 4.1-4.4, reproduced on any dataset with masks.

Every trained row of tables 4.1, 4.3 and 4.4 gets the same training budget, counted in training
samples seen (:class:`Budget`), and the table states it beside the wall time each run took. Runs
live in ``OUT/runs/<name>`` (or ``--runs``); a finished run is reused and an interrupted one
resumed, and each row's scores are kept in ``OUT/scores``, so the tables can be built over several
sittings: run the same command again. A raised ``--budget`` continues the runs to it.

Every number is measured on held-out faces (the dataset's test split, made into evaluation pairs
under the benchmark protocol in ``OUT/pairs``). A trained row that ends no better than the floor
of its table (the blurry input for restoration, a per-pixel prior for segmentation) is flagged
and its numbers withheld: it says nothing about the method, only that the budget was too small.
Each table is printed beside the thesis' numbers, with a verdict computed from the measurements.

A trained row is scored by its network on its own, one pass in float32 (``SCORING``), without the
library's additions to the thesis' method (the mirror-image average of the restoration, the
input's colours kept); the generated masks it is given are the shipped generator's as every
restoration gets them (averaged over the mirror image). Table 4.2 compares the restorers as the
library runs them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smfd import checkpoint, data, metrics
from smfd.errors import InputError, MetricUnavailable
from smfd.identity import SAME_PERSON, FaceGeometry, References, geometry
from smfd.images import resize_labels, resize_to, to_uint8, write_atomically, write_figure
from smfd.labels import GROUPS, to_groups
from smfd.models import ABLATIONS, count_parameters, mask_input
from smfd.restorer import find_weights, weight_files
from smfd.runtime import pick_device

from .compare import EvalOptions, evaluate, load_methods
from .pairs import Pair, find_pairs, make_pairs, pair_records
from .report import fmt, markdown_grid

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
# What each ablation step adds, for its verdict line.
STEP_NAMES = {"plain-upsampling": "the mask branch", "attention-transpose": "attention upsampling (transpose conv)",
              "attention-pixelshuffle": "PixelShuffle instead of transpose conv",
              "full": "the post-processing block"}
# Table 4.1's rows: run name -> (title, config overrides for ``smfd train mask``).
MASK_MODELS = {"mask-generator": ("mask generator (trained here)", {}),
               "unet": ("UNet (smp, resnet34 encoder, from scratch)", {"arch": "unet"}),
               "unetplusplus": ("UNet++ (smp, resnet34 encoder, from scratch)", {"arch": "unetplusplus"})}
TABLE_42_METHODS = ("codeformer", "restoreformer", "restoreformer++", "gfpgan-1.3", "gfpgan-1.4",
                    "smfd-gt-mask", "smfd", "blurry", "deconv")
PRIOR_FACES = 400  # training masks averaged into table 4.1's per-pixel prior
FLAG = "**below the floor: not a result**"
NEVER = 10**9  # early_stop of a run without early stopping (the same for every budget, so runs extend)


def check_deblur_config(overrides: dict) -> None:
    """Refuse --set overrides that no SMFD-UNet can be built from now, not when the first table 4.3
    run starts (after table 4.1's hours of training)."""
    from smfd.train import TrainSettings

    ablated = sorted({k for ablation in ABLATIONS.values() for k in ablation} & set(overrides))
    if ablated:  # the override would win over the row's own setting and undo the ablation
        raise InputError(f"--set {ablated[0]}: table 4.3's rows set it themselves (each its ablation); leave it out")
    for variant, ablation in ABLATIONS.items():  # every table 4.3 row trains its ablation with them
        try:
            TrainSettings(task="deblur", data=(), out="", config={**ablation, **overrides})
        except ValueError as exc:
            raise InputError(f"--set: {exc} (in the {variant} row's network)") from None


EQUAL_BUDGET_CONFIG = {"residual": True}  # SMFD-UNet rows at the default budget (see Budget)


@dataclass(frozen=True)
class Budget:
    """The training budget of every trained row, in training samples seen.

    The default (``samples`` 8,192; SMFD-UNet rows on 128x128 crops) takes about 30-38 minutes per
    SMFD-UNet row, 29-31 per mask-generator or UNet row and 55 per UNet++ row on 2 idle CPU cores
    (README, docs/thesis_tables.md); :meth:`thesis` is the thesis'
    own recipe (50 passes over the training faces at 256x256, early stopping), a GPU's budget.
    Without early stopping every row sees exactly ``samples``: equal budgets, as the tables need.
    At this budget every SMFD-UNet row predicts a correction to the blurry input (``residual``): one
    that rebuilds the image from scratch, as the thesis' does, may end below the input after 8,192
    samples; :meth:`thesis` keeps the thesis' configuration.
    """

    samples: int | None = 8192  # None: the thesis' 50 passes over the training faces
    samples_per_epoch: int | None = 1024  # between two validations; None: one pass over the faces
    patch: int | None = 128  # SMFD-UNet rows; None: whole 256x256 faces (mask rows always: patch_for)
    batch: int = 16
    val_faces: int | None = 32  # None: the whole validation fold
    folds: int = 5
    workers: int = 2
    early_stop: int | None = None  # validations without improvement before stopping; None: never
    deblur_config: dict = dataclasses.field(default_factory=lambda: dict(EQUAL_BUDGET_CONFIG))  # every SMFD-UNet run
    # the mask generator row's overrides; none: the shipped design, which reads the face at half
    # resolution (MaskNetConfig.input_scale), 4x cheaper; the thesis' reads it whole
    mask_config: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        def need(ok: bool, option: str, rule: str, value) -> None:
            if not ok:
                raise InputError(f"{option} must be {rule}, got {value!r}")

        for option, value, least in (("--budget", self.samples, 1), ("--samples-per-epoch", self.samples_per_epoch, 1),
                                     ("--val-faces", self.val_faces, 1), ("--early-stop", self.early_stop, 1)):
            if value is not None:
                need(isinstance(value, int) and value >= least, option, f"at least {least}", value)
        need(self.batch >= 1, "--batch", "at least 1", self.batch)
        need(self.folds >= 2, "--folds", "at least 2", self.folds)
        need(self.workers >= 0, "--workers", "at least 0", self.workers)
        if self.patch is not None:
            need(32 <= self.patch <= data.WORK_SIZE and self.patch % 32 == 0, "--patch",
                 f"a multiple of 32 up to {data.WORK_SIZE}", self.patch)
        if self.samples_per_epoch is not None:
            need(self.samples_per_epoch >= self.batch, "--samples-per-epoch", f"at least --batch ({self.batch})",
                 self.samples_per_epoch)
            need(self.samples_per_epoch % self.batch == 0, "--samples-per-epoch",
                 f"a multiple of --batch ({self.batch})", self.samples_per_epoch)
            if self.samples is not None:
                need(self.samples >= self.samples_per_epoch, "--budget",
                     f"at least --samples-per-epoch ({self.samples_per_epoch})", self.samples)
        check_deblur_config(self.deblur_config)

    @classmethod
    def thesis(cls, **changes) -> "Budget":
        """The thesis' recipe: 50 epochs of whole faces, early stopping after 10 (SPEC section 1)."""
        return cls(**{"samples": None, "samples_per_epoch": None, "patch": None, "val_faces": None,
                      "early_stop": 10, "deblur_config": {}, "mask_config": {"input_scale": 1.0}, **changes})

    def with_config(self, overrides: dict) -> "Budget":
        """The budget with these SMFD-UNet config fields (``--set``) over its own."""
        return dataclasses.replace(self, deblur_config={**self.deblur_config, **overrides})

    def patch_for(self, task: str) -> int | None:
        """The crop a run trains on. Mask rows see whole faces: a face parser places the parts from
        the whole face, and on 128x128 crops the mask generator stayed below the per-pixel prior
        (validation Dice 0.43 after 7,168 samples; the prior scores 0.56 on the test faces)."""
        return None if task == "mask" else self.patch

    def epochs(self) -> int:
        if self.samples is None or self.samples_per_epoch is None:
            return 50
        return math.ceil(self.samples / self.samples_per_epoch)

    def describe(self) -> str:
        if self.samples is None:  # the thesis' 50 epochs, each a pass over the faces unless set shorter
            seen = ("50 passes over the training faces (the thesis' recipe)" if self.samples_per_epoch is None
                    else f"50 epochs of {self.samples_per_epoch:,} training samples (the thesis' 50 passes, "
                         "each cut to that length)")
        else:
            seen = f"{self.epochs() * self.samples_per_epoch:,} training samples"
        every = ("once per pass" if self.samples_per_epoch is None
                 else f"every {self.samples_per_epoch:,} samples")
        return (f"every trained row sees {seen}: "
                + (f"{self.patch}x{self.patch} crops (the mask rows: whole faces)" if self.patch else "whole faces")
                + f" of the {data.WORK_SIZE}x{data.WORK_SIZE} faces, batch {self.batch}, Adam lr 1e-3, "
                f"validation on {self.val_faces or 'all the'} faces of the fold {every}, lr x 0.2 after 5 "
                "validations without improvement, "
                + ("no early stopping" if self.early_stop is None else f"early stopping after {self.early_stop}")
                + (f", SMFD-UNet config overrides {self.deblur_config}" if self.deblur_config else "")
                + (f", mask generator config overrides {self.mask_config}" if self.mask_config
                   else ", the mask generator reading the face at half resolution (the shipped design)"))


@dataclass
class Run:
    """A finished training run: its best checkpoint, what it saw and what it took."""

    name: str
    best: Path
    samples: int
    seconds: float
    history: list[dict]
    best_samples: int  # samples seen when the best checkpoint, the one scored, was saved


def _log(out: Path) -> list[dict]:
    path = out / "log.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


@dataclass(frozen=True)
class Planned:
    """A training run a table needs: ``label`` is its row (a model, an ablation, a fold)."""
    label: str | int
    task: str
    folder: Path
    config: dict
    fold: int = 0


def plan_41(lab: Lab) -> list[Planned]:
    plan = []
    for key, (_, config) in MASK_MODELS.items():
        folder = key
        if key == "mask-generator" and lab.budget.mask_config:  # another network: a run folder of its own
            config, folder = {**config, **lab.budget.mask_config}, f"{key}-{_slug(lab.budget.mask_config)}"
        plan.append(Planned(key, "mask", lab.runs / folder, config))
    return plan


def plan_43(lab: Lab) -> list[Planned]:
    return [Planned(variant, "deblur", lab.runs / f"deblur-{variant}-fold0", {**overrides, **lab.budget.deblur_config})
            for variant, overrides in ABLATIONS.items()]


def plan_44(lab: Lab) -> list[Planned]:  # fold 0 is table 4.3's full row: one run for both
    return [Planned(fold, "deblur", lab.runs / f"deblur-full-fold{fold}", lab.budget.deblur_config, fold)
            for fold in range(lab.budget.folds)]


PLANS = {"4.1": plan_41, "4.3": plan_43, "4.4": plan_44}


def run_settings(lab: Lab, planned: Planned):
    from smfd.train import TrainSettings

    budget = lab.budget
    return TrainSettings(task=planned.task, data=(lab.data,), out=str(planned.folder), epochs=budget.epochs(),
                         batch=budget.batch, patch=budget.patch_for(planned.task),
                         samples_per_epoch=budget.samples_per_epoch, val_faces=budget.val_faces,
                         workers=budget.workers, k=budget.folds, fold=planned.fold,
                         early_stop=budget.early_stop or NEVER, config=dict(planned.config), device=lab.device)


def check_run(settings) -> None:
    """An InputError when the run folder holds a run this budget cannot resume: trained longer, or
    under other settings (another --budget or --set in the same --runs)."""
    from smfd.train import run_inputs, saved_state, training_records

    done = _log(Path(settings.out))
    if done and done[-1]["epoch"] > settings.epochs:
        raise InputError(f"{settings.out}: this run has trained {int(done[-1]['epoch'])} epochs, more than the "
                         f"budget's {settings.epochs}; give the larger --budget or another --runs folder")
    saved_state(settings, run_inputs(settings, *training_records(settings)))


def train_run(lab: Lab, planned: Planned) -> Run:
    """Train, resume, or reuse when finished, one planned run under the lab's budget (reproduce
    checked its folder with :func:`check_run` before the first table)."""
    from smfd.train import train

    out = planned.folder
    print(f"[thesis tables] run {out.name}", flush=True)
    train(run_settings(lab, planned))
    best = out / "best.safetensors"
    if not best.is_file():
        raise InputError(f"{out}: training wrote no best.safetensors")
    history = _log(out)
    best_epoch = checkpoint.read_metadata(best)["info"]["epoch"]
    return Run(out.name, best, int(history[-1].get("samples", 0)), sum(r.get("seconds", 0) for r in history),
               history, int(next(r for r in history if r["epoch"] == best_epoch).get("samples", 0)))


# ---------------------------------------------------------------- scores, kept between sittings

# How a trained row is scored; part of its stored scores' key. 2: the row's network on its own, one
# pass, as training validates it. 1 went through the Restorer, whose additions (the mirror-image
# average, the input's colours kept) every row shared: the colour match hides a colour offset of
# the network's output, part of what the post-processing block changes, so table 4.3 could not
# answer the thesis' question about that block, and table 4.4's held-out and validation columns
# measured different things.
SCORING = 2


def _fingerprint(*paths: Path | None, pairs: list[Pair]) -> str:
    """Changes when a checkpoint is rewritten, the evaluation faces or their files change, the tables
    score otherwise (``SCORING``) or the Restorer, which makes the generated masks, computes
    something else from the same weights (``smfd.restorer.PATH_VERSION``)."""
    from smfd.restorer import PATH_VERSION

    digest = hashlib.sha256(f"thesis scoring {SCORING}; restorer {PATH_VERSION};".encode())
    for p in [*paths, *(f for pair in pairs for f in (pair.blurry, pair.sharp, pair.mask))]:
        stat = p.stat() if p is not None and p.exists() else None
        digest.update(f"{p}:{stat and stat.st_size}:{stat and stat.st_mtime_ns};".encode())
    digest.update(",".join(p.id for p in pairs).encode())
    return digest.hexdigest()


def _cached(path: Path, key: str, compute, reusable=lambda scores: True):
    """``compute()``'s scores, kept in ``path`` under ``key`` and reused while the key is the same
    (and ``reusable`` says they may be)."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key and reusable(stored["scores"]):
            return stored["scores"]
    scores = compute()
    text = json.dumps({"key": key, "scores": scores})
    write_atomically(path, lambda tmp: tmp.write_text(text), ".json")
    return scores


def restoration_scores(restore, pairs: list[Pair], identity: References | None) -> dict:
    """Per-face PSNR, SSIM and identity distance of ``restore(blurry, truth_mask)``."""
    out = {"psnr": [], "ssim": [], "id_distance": []}
    for i, pair in enumerate(pairs):
        blurry, sharp, truth = pair.load()
        restored = restore(blurry, truth)
        out["psnr"].append(metrics.psnr(restored, sharp))
        out["ssim"].append(metrics.ssim(restored, sharp))
        if identity is not None:
            out["id_distance"].append(identity.distance(i, restored))
    return out


def segmentation_scores(model: torch.nn.Module, pairs: list[Pair]) -> dict:
    """Dice and Jaccard (%) per group and their means, pixel counts summed over the faces, and
    the wall time per face: the network's own one pass (``SCORING``)."""
    from smfd.restorer import Restorer

    restorer = Restorer(model, torch.nn.Identity(), next(model.parameters()).device)  # its input tensors
    score = metrics.SegmentationScore(len(GROUPS))
    seconds = 0.0
    for pair in pairs:
        blurry, _, truth = pair.load()
        start = time.perf_counter()
        with torch.inference_mode():
            logits = model(mask_input(model.config, restorer.work_tensor(blurry)))
        predicted = resize_labels(logits[0].argmax(0).cpu().numpy().astype(np.uint8), blurry.shape[1::-1])
        seconds += time.perf_counter() - start
        score.add(predicted, truth)
    return _segmentation_dict(score) | {"seconds_per_face": seconds / len(pairs)}


def _segmentation_dict(score: metrics.SegmentationScore) -> dict:
    return {"dice": [float(v) * 100 for v in score.dice()], "jaccard": [float(v) * 100 for v in score.jaccard()],
            "mean_dice": score.mean_dice() * 100, "mean_jaccard": score.mean_jaccard() * 100}


def prior_scores(data_dir: str, pairs: list[Pair], folds: int) -> dict:
    """Table 4.1's floor: the most frequent group at each pixel over the training faces' masks,
    the same map for every face. A segmenter that does no better has learnt nothing from the image."""
    records = [r for r in data.select(data.open_dataset(data_dir), "train", folds, 0) if r.has_mask]
    counts = np.zeros((len(GROUPS), data.WORK_SIZE, data.WORK_SIZE), np.int32)
    rows, cols = np.indices(counts.shape[1:])
    for record in records[:PRIOR_FACES]:
        groups = to_groups(data.load_face(record, data.WORK_SIZE)[1])
        counts[groups, rows, cols] += 1
    prior = counts.argmax(0).astype(np.uint8)
    score = metrics.SegmentationScore(len(GROUPS))
    for pair in pairs:
        truth = pair.load()[2]
        score.add(prior if prior.shape == truth.shape else _resized_labels(prior, truth.shape), truth)
    return _segmentation_dict(score)


def _resized_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from smfd.images import resize_labels

    return resize_labels(labels, (shape[1], shape[0]))


# ---------------------------------------------------------------- verdicts

def paired_difference(after: list[float], before: list[float]) -> tuple[float, float]:
    """Mean per-face difference and the half-width of its 95 % confidence interval (Student's t:
    1.96 would be 6 % too narrow at 20 faces)."""
    from scipy.stats import t

    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    half = t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.inf
    return float(d.mean()), float(half)


def step_verdict(step: str, after: dict, before: dict, thesis_delta: float) -> str:
    """One line: what ``step`` changes in PSNR at equal budget, measured face by face, and
    whether that agrees with the thesis' ``thesis_delta`` (dB)."""
    mean, half = paired_difference(after["psnr"], before["psnr"])
    ssim = (np.mean(after["ssim"]) - np.mean(before["ssim"])) * 100
    ci = f"95 % CI {mean - half:+.2f} to {mean + half:+.2f} dB, SSIM {ssim:+.2f} points"
    if mean - half > 0:
        ours, said = 1, f"{step} adds {mean:.2f} dB at equal budget ({ci})"
    elif mean + half < 0:
        ours, said = -1, f"{step} costs {-mean:.2f} dB at equal budget ({ci})"
    else:
        ours, said = 0, f"{step} makes no measurable difference at equal budget ({mean:+.2f} dB, {ci})"
    theirs = 0 if abs(thesis_delta) < 0.05 else (1 if thesis_delta > 0 else -1)
    if ours != theirs:
        said += f". **Differs from the thesis**, which reports {thesis_delta:+.2f} dB for this step"
    elif ours and not mean - half <= thesis_delta <= mean + half:
        said += (f"; the same direction as the thesis, but it reports {thesis_delta:+.2f} dB, "
                 f"{'more' if thesis_delta > mean + half else 'less'} than measured here")
    else:
        said += f"; the thesis reports {thesis_delta:+.2f} dB"
    return said + "."


def identity_verdict(after: dict, before: dict) -> str:
    """What a step does to identity, face by face: the change of the descriptor distance to the
    sharp face (negative = closer to the person) and of the same-person share."""
    mean, half = paired_difference(after["id_distance"], before["id_distance"])
    word = ("closer to the person" if mean + half < 0 else "further from the person" if mean - half > 0
            else "no measurable change")
    return (f"{word} (descriptor distance {mean:+.3f}, 95 % CI {mean - half:+.3f} to {mean + half:+.3f}; "
            f"same person {_share(before['id_distance']):.1f} % -> {_share(after['id_distance']):.1f} %)")


# ---------------------------------------------------------------- tables

def _num(value, digits: int) -> str:
    """A cell; n/a where there is no number (e.g. Dice of a group absent from every face)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _slug(config: dict) -> str:
    """A config's overrides as a folder name, e.g. input_scale-1.0."""
    return "-".join(f"{k}-{v}" for k, v in sorted(config.items()))


def _budget_cells(run: Run) -> list[str]:
    best = "" if run.best_samples == run.samples else f" (scored: best at {run.best_samples:,})"
    return [f"{run.samples:,}{best}", f"{run.seconds / 60:.1f}"]


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _share(distances: list[float]) -> float:
    return float(np.mean(np.asarray(distances) < SAME_PERSON)) * 100


def _curves(path: Path, runs: list[Run], labels: list[str], metric: str, title: str) -> Path:
    """One figure: the validation ``metric`` of every run (named as its table row) against training
    samples seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run, label in zip(runs, labels, strict=True):
        points = [(r["samples"], r[metric]) for r in run.history if metric in r and "samples" in r]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax.set_xlabel("training samples seen")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_figure(path, fig, 110)
    plt.close(fig)
    return path


class Lab:
    """What the tables share: the pairs, the runs folder, the budget, the scores cache."""

    def __init__(self, data_dir: str, out: Path, runs: Path, pairs: list[Pair], budget: Budget,
                 options: EvalOptions):
        self.data, self.out, self.runs, self.pairs, self.budget = data_dir, out, runs, pairs, budget
        self.options = options
        self.device = str(pick_device(options.device))
        self._identity = None
        self._geometry: FaceGeometry | None = None

    def check_identity(self) -> None:
        """Load dlib's networks now: where they are missing, say so before hours of training."""
        try:
            self._geometry = self._geometry or geometry()
        except MetricUnavailable as exc:
            raise InputError(f"tables 4.3 and 4.4 measure identity, which is not available here: {exc}") from None

    def identity(self) -> References:
        if self._identity is None:
            self.check_identity()
            self._identity = References((pair.load()[1] for pair in self.pairs), self._geometry)
        return self._identity

    def cached(self, name: str, key_paths: tuple, compute) -> dict:
        return _cached(self.out / "scores" / f"{name}.json", _fingerprint(*key_paths, pairs=self.pairs), compute)

    def blurry(self) -> dict:
        return self.cached("blurry-input", (), lambda: restoration_scores(
            lambda blurry, _: blurry, self.pairs, self.identity()))

    def restoration(self, run: Run, model: torch.nn.Module, generated: bool) -> dict:
        """Per-face scores of a trained SMFD-UNet run with the truth or the generated masks."""
        if generated and not model.config.use_mask:  # no mask branch: the masks change nothing
            generated = False
        keys = (run.best, self.mask_weights()) if generated else (run.best,)
        return self.cached(f"{run.name}-{'generated' if generated else 'gt'}", keys, lambda: restoration_scores(
            _restore_with(self, model, generated), self.pairs, self.identity()))

    def mask_weights(self) -> Path:
        path = weight_files(self.options.weights.get("smfd"))[0]
        if not path.is_file():
            raise InputError(f"{path}: the mask generator for the generated-mask columns is absent")
        return path


def table_41(lab: Lab) -> tuple[str, list[Run]]:
    prior = lab.cached(f"mask-prior-of-{lab.budget.folds}-folds", (),  # the prior is of fold 0's training faces
                       lambda: prior_scores(lab.data, lab.pairs, lab.budget.folds))
    header = ["model", "samples", "minutes", *[f"Dice {g}" for g in GROUPS], "Dice mean %",
              *[f"Jaccard {g}" for g in GROUPS], "Jaccard mean %", "parameters", "ms per face", "thesis Dice %",
              "thesis Jaccard %", "thesis parameters"]
    rows = [["per-pixel prior (floor, no training on images)", "", "", *_overlap_cells(prior), "0", "", "", "", ""]]
    runs, flags, results = [], [], {}
    for planned in plan_41(lab):
        key, title = planned.label, MASK_MODELS[planned.label][0]
        run = train_run(lab, planned)
        runs.append(run)
        model = checkpoint.load(run.best, lab.device)
        s = lab.cached(f"{planned.folder.name}-segmentation", (run.best,),
                       lambda: segmentation_scores(model, lab.pairs))
        t = THESIS_41[key]
        params = f"{count_parameters(model)['total']:,}"
        thesis = [_num(t[0], 2), _num(t[1], 2), f"{t[2]:,}"]
        if s["mean_dice"] <= prior["mean_dice"]:
            flags.append(f"- {title}: mean Dice {s['mean_dice']:.2f} % is no better than the per-pixel prior's "
                         f"{prior['mean_dice']:.2f} %; its row is withheld. Train longer (a larger --budget).")
            rows.append([title, *_budget_cells(run), FLAG, *[""] * (2 * len(GROUPS) + 1), params, "", *thesis])
            continue
        results[key] = s
        rows.append([title, *_budget_cells(run), *_overlap_cells(s), params, _num(s["seconds_per_face"] * 1000, 0),
                     *thesis])
    shipped = weight_files(lab.options.weights.get("smfd"))[0]
    if shipped.is_file():
        model = checkpoint.load(shipped, lab.device)
        s = lab.cached("shipped-mask-generator-segmentation", (shipped,), lambda: segmentation_scores(model, lab.pairs))
        rows.append([f"mask generator, not trained here ({shipped.name})", "", "", *_overlap_cells(s),
                     f"{count_parameters(model)['total']:,}", _num(s["seconds_per_face"] * 1000, 0), "", "", ""])
    verdict = _verdict_41(results)
    _curves(lab.out / "curves_4.1.png", runs, [title for title, _ in MASK_MODELS.values()], "dice",
            "Table 4.1: validation Dice per run")
    return ("## Table 4.1: mask generator vs UNet vs UNet++ (held-out faces, equal budget)\n\n"
            + markdown_grid(header, rows)
            + "\nDice and Jaccard (%): per group over the 5 groups (background included), pixel counts summed "
              "over the faces, then the mean. Parameters counted as Keras does (BatchNorm statistics "
              f"included). ms per face: mask prediction at 256x256 on {lab.device}, wall time here. Learning "
              "curves: curves_4.1.png.\n\n" + "\n".join(flags) + ("\n\n" if flags else "")
            + f"**Verdict.** {verdict}\n"), runs


def _overlap_cells(s: dict) -> list[str]:
    """Dice per group and mean, then Jaccard per group and mean (%)."""
    return [*[_num(v, 2) for v in s["dice"]], _num(s["mean_dice"], 2),
            *[_num(v, 2) for v in s["jaccard"]], _num(s["mean_jaccard"], 2)]


def _verdict_41(results: dict) -> str:
    """The order of the rows by mean Dice here and in the thesis, and whether they agree."""
    if set(results) != set(MASK_MODELS):
        return "not measured: some rows are below the floor (see above)."
    names = {"mask-generator": "mask generator", "unet": "UNet", "unetplusplus": "UNet++"}
    here = sorted(results, key=lambda k: -results[k]["mean_dice"])
    there = sorted(MASK_MODELS, key=lambda k: -THESIS_41[k][0])
    line = ("Mean Dice at equal budget, one run each: "
            + " > ".join(f"{names[k]} {results[k]['mean_dice']:.2f} %" for k in here)
            + "; the thesis: " + " > ".join(f"{names[k]} {THESIS_41[k][0]:.2f} %" for k in there) + ".")
    if here == there:
        return line + " The same order as the thesis."
    if here[0] == there[0]:
        return line + f" {names[here[0]]} leads, as in the thesis; **the order of the others differs from the thesis**."
    return line + f" **Differs from the thesis**: {names[here[0]]} leads here, {names[there[0]]} there."


def table_42(lab: Lab, overwrite: bool) -> str:
    folder = lab.out / "table4.2"
    from baselines import info

    # What its results were made from: kept results of other weights (named, downloaded since, or
    # rewritten at the same path), another CodeFormer fidelity or other faces are made anew.
    weights = lab.options.weights
    named = sorted((m, str(Path(w).resolve())) for m, w in weights.items())
    files = [Path(weights[m]) if m in weights else info(m).cached_path()  # SMFD's named folder: weight_files
             for m in TABLE_42_METHODS if not (m == "smfd" and m in weights)]
    key = json.dumps({"weights": named, "fidelity": lab.options.fidelity, "files": _fingerprint(
        *weight_files(weights.get("smfd")), *files, pairs=lab.pairs)})
    kept = lab.out / "scores" / "table4.2.json"
    if overwrite:  # evaluated anew (the other tables' scores are kept: their runs are)
        kept.unlink(missing_ok=True)
    # A metric that could not be computed then (its parameters or backbone absent) may be now: such
    # kept results are not reused.
    results = {r["method"]: r for r in _cached(kept, key, lambda: evaluate(
        lab.pairs, list(TABLE_42_METHODS), folder, lab.options, overwrite=True),
        reusable=lambda rows: not any("not available (" in r["status"] for r in rows))}
    rows = []
    for name in TABLE_42_METHODS:
        r, t = results[name], THESIS_42.get(name)
        ssim = None if r.get("ssim") is None else r["ssim"] * 100
        share = None if r.get("same_person") is None else r["same_person"] * 100
        ours = [fmt("psnr", r.get("psnr")) or "n/a", _num(ssim, 2)] + [
            fmt(k, r.get(k)) or "n/a" for k in ("mse", "niqe", "lpips", "fid", "id_dist")] + [_num(share, 1)]
        theirs = ["" for _ in range(6)] if t is None else [_num(t[0], 2), _num(t[1], 2), _num(t[2], 2),
                                                           _num(t[3], 4), _num(t[4], 4), _num(t[5], 2)]
        rows.append([name, str(r["n"]), *ours, *theirs, "ok" if r["status"] == "ok" else "see below"])
    notes = "".join(f"- `{r['method']}`: {r['status']}\n" for r in results.values() if r["status"] != "ok")
    return ("## Table 4.2: zero-shot comparison (held-out faces)\n\n"
            + markdown_grid(["method", "n", "PSNR", "SSIM %", "MSE", "NIQE", "LPIPS", "FID", "ID dist", "ID < 0.6 %",
                             "thesis PSNR", "thesis SSIM %", "thesis MSE", "thesis NIQE", "thesis LPIPS", "thesis FID",
                             "status"], rows)
            + "\nEach method as the library runs it (SMFD through the Restorer: the mirror-image average and the "
              "input's colours kept). ID dist: Euclidean distance of dlib's 128-d face descriptors of the result "
              "and the sharp face (box found once on the sharp face); ID < 0.6: the share of faces dlib calls the "
              "same person. "
              "The thesis does not say which GFPGAN version it ran (its row is shown against both). Its "
              "NIQE values (about 0.26) are not on the scale of the standard NIQE (about 3-20 on faces); "
              "they cannot be compared with ours. Full results, samples and a chart: "
              f"{folder}.\n\n" + notes)


def _restore_with(lab: Lab, deblur: torch.nn.Module, generated: bool):
    """restore(blurry, truth): the row's network on its own, one pass (``SCORING``), with the truth
    mask or with the mask generator's as the Restorer makes it."""
    from smfd.restorer import Restorer

    mask_model = checkpoint.load(lab.mask_weights(), lab.device) if generated else torch.nn.Identity()
    restorer = Restorer(mask_model, deblur, lab.device)  # its input tensors and generated masks

    def restore(blurry: np.ndarray, truth: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x, m, _ = restorer.deblur_inputs(blurry, None if generated else truth)
            out = deblur(x, m).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        return resize_to(to_uint8(out), blurry.shape[1::-1])
    return restore


def _restoration_cells(s: dict) -> list[str]:
    return [_num(_mean(s["psnr"]), 2), _num(_mean(s["ssim"]) * 100, 2), _num(_mean(s["id_distance"]), 3),
            _num(_share(s["id_distance"]), 1)]


def table_43(lab: Lab) -> tuple[str, list[Run]]:
    blurry = lab.blurry()
    floor = _mean(blurry["psnr"])
    header = ["configuration", "samples", "minutes"] + [f"{c} ({m})" for m in ("GT masks", "generated masks")
                                                        for c in ("PSNR", "SSIM %", "ID dist", "ID < 0.6 %")]
    header += ["thesis PSNR", "thesis SSIM %"]
    rows = [["blurry input (floor)", "", "", *_restoration_cells(blurry) * 2, "", ""]]
    runs, flags, scored = [], [], {}
    for planned in plan_43(lab):
        variant = planned.label
        run = train_run(lab, planned)
        runs.append(run)
        model = checkpoint.load(run.best, lab.device)
        both = {"gt": lab.restoration(run, model, False), "generated": lab.restoration(run, model, True)}
        t = THESIS_43[variant]
        low = [s for s in ("gt", "generated") if _mean(both[s]["psnr"]) <= floor]
        if low:
            flags.append(f"- {ABLATION_TITLES[variant]}: PSNR {_mean(both[low[0]]['psnr']):.2f} dB with "
                         f"{'ground-truth' if low[0] == 'gt' else 'generated'} masks, no better than the blurry "
                         f"input's {floor:.2f} dB; its row is withheld. Train longer (a larger --budget).")
            rows.append([ABLATION_TITLES[variant], *_budget_cells(run), FLAG] + [""] * 7 + [_num(t[0], 2), _num(t[1], 2)])
            continue
        scored[variant] = both
        rows.append([ABLATION_TITLES[variant], *_budget_cells(run), *_restoration_cells(both["gt"]),
                     *_restoration_cells(both["generated"]), _num(t[0], 2), _num(t[1], 2)])
    verdicts = []
    names = list(ABLATIONS)
    for before, after in zip(names, names[1:]):
        step = STEP_NAMES.get(after, after)
        if before not in scored or after not in scored:
            verdicts.append(f"- {step}: not judged (a row of the step is below the floor).")
            continue
        delta = THESIS_43[after][0] - THESIS_43[before][0]
        a, b = scored[after], scored[before]
        line = step_verdict(step, a["gt"], b["gt"], delta)
        mean, half = paired_difference(a["generated"]["psnr"], b["generated"]["psnr"])
        verdicts.append(f"- Ground-truth masks: {line} Identity: {identity_verdict(a['gt'], b['gt'])}. "
                        f"With generated masks: {mean:+.2f} dB (95 % CI {mean - half:+.2f} to {mean + half:+.2f}); "
                        f"identity: {identity_verdict(a['generated'], b['generated'])}.")
    against = [f"- {ABLATION_TITLES[v]}: with ground-truth masks {identity_verdict(both['gt'], blurry)}; "
               f"with generated masks {identity_verdict(both['generated'], blurry)}." for v, both in scored.items()]
    _curves(lab.out / "curves_4.3.png", runs, [ABLATION_TITLES[v] for v in ABLATIONS], "psnr",
            "Table 4.3: validation PSNR per ablation run")
    return ("## Table 4.3: ablation (held-out faces, equal budget)\n\n" + markdown_grid(header, rows)
            + f"\nTrained with ground-truth masks (our reading of section 3.4.6, which also speaks of training with the generator's masks); scored with the ground-truth masks and with "
              f"the masks of the mask generator {lab.mask_weights()}. ID dist: Euclidean distance of dlib's 128-d "
              "face descriptors of the result and the sharp face (box found once on the sharp face); ID < 0.6: "
              "the share of faces dlib calls the same person. Learning curves: curves_4.3.png.\n\n"
            + "\n".join(flags) + ("\n\n" if flags else "")
            + "**Verdicts** (each step against the row above it, face by face on the held-out faces; one "
              "training run per row, so the confidence intervals cover the faces, not the run: table 4.4's "
              "folds show how much a run varies):\n\n"
            + "\n".join(verdicts) + "\n"
            + ("\n**Identity against the blurry input** (each row, face by face; a restorer should bring the "
               "face closer to the person, never further):\n\n" + "\n".join(against) + "\n" if against else "")), runs


def table_44(lab: Lab) -> tuple[str, list[Run]]:
    blurry = lab.blurry()
    floor = _mean(blurry["psnr"])
    rows = [["blurry input (floor, held-out faces)", "", "", _num(floor, 4), _num(_mean(blurry["ssim"]) * 100, 2),
             _num(_mean(blurry["id_distance"]), 3), _num(_share(blurry["id_distance"]), 1), "", "", "", ""]]
    held, val, runs, flags = [], [], [], []
    for planned in plan_44(lab):
        fold = planned.label
        run = train_run(lab, planned)
        runs.append(run)
        model = checkpoint.load(run.best, lab.device)
        s = lab.restoration(run, model, False)
        v = checkpoint.read_metadata(run.best)["info"]["scores"]
        t = THESIS_44[fold] if fold < len(THESIS_44) else None
        thesis = [_num(t and t[0], 4), _num(t and t[1], 2)]
        if _mean(s["psnr"]) <= floor:
            flags.append(f"- fold {fold + 1}: held-out PSNR {_mean(s['psnr']):.2f} dB is no better than the "
                         f"blurry input's {floor:.2f} dB; withheld.")
            rows.append([f"fold {fold + 1}", *_budget_cells(run), FLAG, "", "", "", "", "", *thesis])
            continue
        held.append((_mean(s["psnr"]), _mean(s["ssim"]) * 100, _mean(s["id_distance"]), _share(s["id_distance"])))
        val.append((v["psnr"], v["ssim"] * 100))
        rows.append([f"fold {fold + 1}", *_budget_cells(run), _num(held[-1][0], 4), _num(held[-1][1], 2),
                     _num(held[-1][2], 3), _num(held[-1][3], 1), _num(val[-1][0], 4), _num(val[-1][1], 2), *thesis])
    thesis = np.array(THESIS_44)
    # Population standard deviation: the thesis' 0.2289 dB is that of its five folds.
    theirs = [f"{thesis[:, 0].mean():.4f} ± {thesis[:, 0].std():.4f}", f"{thesis[:, 1].mean():.2f} ± {thesis[:, 1].std():.2f}"]
    if flags:
        rows.append(["mean ± SD", "", "", "not computed: folds below the floor", "", "", "", "", "", *theirs])
        verdict = "not measured: some folds are below the floor (see above)."
    else:
        h, v = np.array(held), np.array(val)
        spread = [(h, 0, 4), (h, 1, 2), (h, 2, 3), (h, 3, 1), (v, 0, 4), (v, 1, 2)]
        rows.append(["mean ± SD", "", "", *[f"{a[:, i].mean():.{d}f} ± {a[:, i].std():.{d}f}"
                                            if np.isfinite(a[:, i]).all() else "n/a" for a, i, d in spread],
                     *theirs])
        # Like with like: the thesis reports each fold's own validation scores.
        verdict = (f"across {lab.budget.folds} folds the validation PSNR (what the thesis reports) varies by "
                   f"{v[:, 0].std():.2f} dB (SD), the thesis' by {thesis[:, 0].std():.2f} dB, and our mean is "
                   f"{v[:, 0].mean() - thesis[:, 0].mean():+.2f} dB from the thesis' (at our budget, on our faces); "
                   f"on the same held-out faces for every fold, the PSNR varies by {h[:, 0].std():.2f} dB.")
    _curves(lab.out / "curves_4.4.png", runs, [f"fold {i + 1}" for i in range(len(runs))], "psnr",
            "Table 4.4: validation PSNR per fold (each on its own validation faces)")
    return (f"## Table 4.4: {lab.budget.folds}-fold cross-validation (equal budget)\n\n"
            + markdown_grid(["fold", "samples", "minutes", "held-out PSNR", "held-out SSIM %", "held-out ID dist",
                             "held-out ID < 0.6 %", "val PSNR", "val SSIM %", "thesis PSNR", "thesis SSIM %"], rows)
            + "\nHeld-out: the test faces of the tables above, ground-truth masks (ID dist: dlib descriptor "
              "distance to the sharp face, and ID < 0.6 the share of faces dlib calls the same person, as in "
              "table 4.3). Val: the fold's own validation "
              "faces at the best validation, as the thesis reports. Learning curves: curves_4.4.png.\n\n"
            + "\n".join(flags) + ("\n\n" if flags else "") + f"**Verdict.** {verdict}\n"), runs


TABLES_FILE = "thesis_tables.md"  # written last: a sitting without it is one to continue


def check_pairs_fit(pairs_dir: Path, data_dir: str, faces: int) -> None:
    """Pairs kept from an earlier sitting must be of this dataset's faces, and enough of them."""
    try:
        made = json.loads((pairs_dir / "pairs.json").read_text())
        made["dataset"], made["faces"]
    except (ValueError, TypeError, KeyError):  # not JSON, not an object, or another program's file
        raise InputError(f"{pairs_dir / 'pairs.json'}: not a record of evaluation pairs made by smfd; "
                         "choose another --out") from None
    if made.get("split") != "test" or made.get("seed") != 0:  # held-out faces, the tables' degradations
        raise InputError(f"{pairs_dir}: made with --split {made.get('split')} --seed {made.get('seed')}; the "
                         "tables need the held-out faces degraded with seed 0: choose another --out")
    if Path(made["dataset"]).resolve() != Path(data_dir).resolve():
        raise InputError(f"{pairs_dir}: made from {made['dataset']}, not {data_dir}; choose another --out "
                         "(its runs and scores belong to that dataset too)")
    if made["faces"] < faces:
        raise InputError(f"{pairs_dir}: holds {made['faces']} held-out faces, fewer than the {faces} asked for "
                         "(--test-faces); choose another --out or give --test-faces "
                         f"{made['faces']}")


def reproduce(data_dir: str, out: str | Path, tables: list[str], budget: Budget = Budget(),
              options: EvalOptions | None = None, test_faces: int | None = None,
              runs: str | Path | None = None, overwrite: bool = False) -> str:
    """Build the requested tables; writes ``OUT/thesis_tables.md`` (and one curves PNG per trained
    table) and returns its text. An earlier run's tables are refused unless ``overwrite``; its
    training runs and scores are reused either way. A sitting interrupted before its tables were
    written (thesis_tables.md is the last) continues without it: its curves are replaced."""
    options = options or EvalOptions()
    out = Path(out)
    tables_md = out / TABLES_FILE
    if tables_md.exists() and not overwrite:
        raise InputError(f"{tables_md}: tables of an earlier run; pass --overwrite to replace them (its "
                         "training runs and scores are reused; table 4.2 is evaluated anew) or choose another --out")
    named = options.weights.get("smfd")
    if named is not None:  # weights named on the command line are used, never skipped for want of a file
        try:
            find_weights(named)
        except InputError as exc:
            raise InputError(f"--weights smfd={named}: {exc}") from None
    pick_device(options.device)  # named before the pairs are made
    if "4.2" in tables:  # its named weights load now, not after hours of training for table 4.1
        load_methods([m for m in options.weights if m in TABLE_42_METHODS], options, has_masks=True)
    runs = Path(runs) if runs else out / "runs"
    pairs_dir = out / "pairs"
    held_out = pair_records(data_dir)
    unmasked = sum(not r.has_mask for r in held_out)
    if unmasked:  # every column of the tables scores against the true mask or restores with it
        raise InputError(f"{data_dir}: {unmasked} of its {len(held_out)} held-out faces have no mask; "
                         "the thesis' tables need a dataset with a mask for every face")
    if (pairs_dir / "pairs.json").is_file():
        check_pairs_fit(pairs_dir, data_dir, min(test_faces or len(held_out), len(held_out)))
    else:
        make_pairs(data_dir, pairs_dir, limit=test_faces, overwrite=True)  # an interrupted making: again
    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp", pairs_dir / "masks")[:test_faces]
    lab = Lab(data_dir, out, runs, pairs, budget, options)
    if "4.3" in tables:
        lab.mask_weights()  # its generated-mask columns need one: say so before hours of training
    if {"4.3", "4.4"} & set(tables):
        lab.check_identity()
    # Every run folder already there must suit this budget and config: found now, not when its
    # table is reached after hours of training for the ones before it.
    for key in sorted(set(tables) & set(PLANS)):
        for planned in PLANS[key](lab):
            check_run(run_settings(lab, planned))
    builders = {"4.1": lambda: table_41(lab), "4.2": lambda: (table_42(lab, overwrite), []),
                "4.3": lambda: table_43(lab), "4.4": lambda: table_44(lab)}
    parts, all_runs = [], {}
    for key in sorted(set(tables)):
        text, made = builders[key]()
        parts.append(text)
        all_runs.update({r.name: r for r in made})
    seconds = sum(r.seconds for r in all_runs.values())
    head = [f"# The thesis' tables, reproduced on {data_dir}\n",
            f"Held-out faces: {len(pairs)} (test split, pairs in {pairs_dir})"
            + (f"; runs in {runs}.\n" if all_runs else ".\n")]
    if all_runs:  # only the trained tables have a budget
        head.append(f"**Training budget**: {budget.describe()}. {len(all_runs)} trained runs took "
                    f"{seconds / 3600:.2f} hours of training and validation here in all (each row's minutes are in "
                    "its table). A row that ends no better than its table's floor is withheld and flagged, never "
                    "shown as a result.\n")
    text = "\n".join(head + parts)
    write_atomically(out / TABLES_FILE, lambda tmp: tmp.write_text(text), ".md")
    return text
