"""One training loop for both networks (thesis 3.4.6), on CPU, one GPU, or many through torchrun.

* Adam; the learning rate is multiplied by 0.2 after ``lr_patience`` epochs without improvement of
  the monitored metric (val Dice for the mask generator; val SSIM for SMFD, or PSNR, or identity:
  ``monitor``), down to 1e-9; training stops after ``early_stop`` such epochs; the best checkpoint
  is kept.
* Everything needed to resume (weights, optimiser, scheduler, history) is written after every
  epoch to ``state.pt``; running the same command again continues where it stopped, on the same
  faces and --mask-model/--teacher files (see run_inputs).
* Under ``torchrun`` (WORLD_SIZE > 1) each process trains on its share of every epoch with
  DistributedDataParallel; rank 0 validates, logs and saves, and shares its verdict.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from . import checkpoint, data, degrade, metrics
from .batch import check_folder, no_empty_folder_left
from .errors import InputError
from .images import PARTIAL_PREFIX, to_uint8, write_atomically
from .labels import CLASSES, GROUPS
from .losses import LOSSES, SSIM_WEIGHT, restoration_loss, segmentation_loss
from .models import (MaskNetConfig, SegBaselineConfig, SMFDConfig, build, count_parameters,
                     generated_mask_input, mask_input, mask_probabilities, one_hot_mask, with_overrides)
from .paths import benchmark_data, sha256_of
from .runtime import fast_autocast, pick_device

# Validation figures that may pick the best epoch and drive the learning rate; the first is the
# default. "identity": the mean dlib descriptor distance to the sharp face (lower is better).
MONITORS = {"mask": ("dice",), "deblur": ("ssim", "psnr", "identity")}
SEED_MAX = 2**64 - 1  # torch.manual_seed's range


@dataclass
class TrainSettings:
    task: str  # "mask" or "deblur"
    data: tuple[str, ...]  # dataset folders, any layout (see smfd.data)
    out: str  # run folder: state.pt, best.safetensors, log.csv
    epochs: int = 50
    batch: int = 16
    lr: float = 1e-3
    lr_factor: float = 0.2
    lr_patience: int = 5
    min_lr: float = 1e-9
    early_stop: int = 10
    size: int = data.WORK_SIZE
    patch: int | None = None  # train on random patch x patch crops of the working-size sample
    samples_per_epoch: int | None = None  # default: one pass over the training faces
    val_faces: int | None = None  # cap on validation faces (default: all of the fold)
    workers: int = 2
    seed: int = 0
    k: int = 5
    fold: int = 0
    test_fraction: float = 0.2
    loss: str | None = None  # mask: dice | dice+ce; deblur: mse | l1 | l1+ssim
    mask_source: str = "gt"  # deblur: gt | generated | mix (half of the faces each)
    mask_model: str | None = None  # mask-generator checkpoint for generated / mix
    config: dict = field(default_factory=dict)  # model config overrides, e.g. {"use_mask": false}
    init: str | None = None  # start from these weights (fine-tuning)
    init_partial: bool = False  # from init, only the tensors whose name and shape fit (e.g. the encoders)
    device: str = "auto"
    augment: bool = True
    preset: str = "thesis"  # degradation pipeline of the training samples: smfd.degrade.PRESETS
    semantic: float = 0.0  # deblur: weight of the semantic-consistency term (Trainer.semantic_term)
    perceptual: float = 0.0  # deblur: weight of the mask generator's feature distance (Trainer.perceptual_term)
    parts_weight: float = 0.0  # deblur: a true facial-parts pixel's error counts 1 + this
    ssim_weight: float | None = None  # deblur, --loss l1+ssim: the weight of (1 - SSIM) (default SSIM_WEIGHT)
    monitor: str | None = None  # validation figure that keeps the best epoch: MONITORS
    teacher: str | None = None  # a network of the same task whose outputs are the training targets
    teacher_masks: str = "same"  # deblur: the masks the teacher reads, the student's or the true ones

    def __post_init__(self):
        if self.task not in MONITORS:
            raise ValueError(f"task must be 'mask' or 'deblur', got {self.task!r}")
        self.monitor = self.monitor or MONITORS[self.task][0]
        if self.monitor not in MONITORS[self.task]:
            raise ValueError(f"--monitor for {self.task} must be one of {', '.join(MONITORS[self.task])}, "
                             f"got {self.monitor!r}")
        self.loss = self.loss or LOSSES[self.task][0]
        if self.loss not in LOSSES[self.task]:
            raise ValueError(f"--loss for {self.task} must be one of {', '.join(LOSSES[self.task])}, "
                             f"got {self.loss!r}")
        if self.task == "deblur" and self.mask_source not in ("gt", "generated", "mix"):
            raise ValueError(f"mask source must be gt, generated or mix, got {self.mask_source!r}")
        if self.task == "deblur" and self.config.get("use_mask") is False:  # e.g. --ablation no-mask
            unread = [o for o, on in ((f"--mask-source {self.mask_source}", self.mask_source != "gt"),
                                      ("--teacher-masks true", self.teacher_masks == "true")) if on]
            if unread:
                raise ValueError(f"{unread[0]} chooses SMFD-UNet's mask input, and this network reads no mask "
                                 "(use_mask=false: --ablation no-mask); leave it out")
        if self.task == "deblur" and self.mask_source != "gt" and not self.mask_model:
            raise ValueError("generated or mixed masks need --mask-model (a mask-generator checkpoint)")
        if self.init_partial and not self.init:
            raise ValueError("--init-partial needs --init (the checkpoint to take tensors from)")
        # Options this run would not read are refused rather than silently ignored.
        if self.task == "mask" and (self.mask_source != "gt" or self.mask_model):
            raise ValueError("--mask-source and --mask-model choose SMFD-UNet's (deblur) mask input; "
                             "a mask generator trains on the true masks")
        if (self.task == "deblur" and self.mask_model and self.mask_source == "gt"
                and not (self.semantic or self.perceptual)):
            raise ValueError("--mask-model is read with --mask-source generated or mix, --semantic or "
                             "--perceptual; with the true masks alone no generator runs")
        resolved = [str(Path(d).resolve()) for d in self.data]
        if len(set(resolved)) != len(resolved):
            twice = next(d for d, r in zip(self.data, resolved) if resolved.count(r) > 1)
            raise ValueError(f"{twice}: dataset given twice (its faces would count twice and validate twice)")
        if self.preset not in degrade.PRESETS:
            raise ValueError(f"preset must be one of {', '.join(degrade.PRESETS)}, got {self.preset!r}")
        self.data = tuple(self.data)
        self.check_numbers()
        if self.teacher_masks not in ("same", "true"):
            raise ValueError(f"--teacher-masks must be same or true, got {self.teacher_masks!r}")
        if self.teacher_masks == "true" and (self.task != "deblur" or not self.teacher):
            raise ValueError("--teacher-masks true needs --teacher, an SMFD-UNet (deblur) that reads the true masks")
        if self.parts_weight and self.task != "deblur":
            raise ValueError("--parts-weight weighs SMFD-UNet's (deblur) restoration loss")
        if self.ssim_weight is not None and self.loss != "l1+ssim":
            raise ValueError(f"--ssim-weight weighs the SSIM of --loss l1+ssim (SMFD-UNet), not of {self.loss}")
        if self.loss == "l1+ssim" and self.ssim_weight is None:  # runs saved before the option resume as 0.2
            self.ssim_weight = SSIM_WEIGHT
        for option, weight in (("--semantic", self.semantic), ("--perceptual", self.perceptual)):
            if weight and (self.task != "deblur" or not self.mask_model):
                raise ValueError(f"{option} trains SMFD-UNet (deblur) and needs --mask-model, the generator "
                                 "that reads the restored face")
        try:  # config overrides (--set) that no network can train on this task's data fail now, not at the first batch
            self.try_network()
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(f"the network config overrides {json.dumps(self.config)} (--set, --ablation): "
                             f"no network can be trained from them ({str(exc)[:300]})") from None

    def try_network(self) -> None:
        """Build the network on the meta device (no memory, no arithmetic) and run it on inputs of
        the training's shapes: RGB faces and, for SMFD-UNet, the one-hot 5-group mask."""
        config = self.model_config()
        if self.task == "deblur" and (config.image_channels, config.mask_channels) != (3, 5):
            raise ValueError("SMFD-UNet reads RGB faces (image_channels 3) and the 5 groups (mask_channels 5)")
        if self.task == "mask" and (config.classes not in (len(GROUPS), len(CLASSES))
                                    or config.in_channels not in (1, 3)):
            raise ValueError(f"a mask network predicts {len(GROUPS)} groups or {len(CLASSES)} "
                             "classes (classes) from a grayscale or RGB face (in_channels 1 or 3)")
        side = self.patch or self.size
        with torch.device("meta"):
            net, face = build(config), torch.zeros(1, 3, side, side)
            if self.task == "deblur":
                net(face, torch.zeros(1, config.mask_channels, side, side))
            else:
                net(mask_input(config, face))

    def check_numbers(self) -> None:
        """Refuse values no run can use, naming the ``smfd train`` option, before any work starts."""
        def need(ok: bool, option: str, rule: str, value) -> None:
            if not ok:
                raise ValueError(f"{option} must be {rule}, got {value!r}")

        for option, name, least in (("--epochs", "epochs", 1), ("--batch", "batch", 1),
                                    ("--lr-patience", "lr_patience", 1), ("--early-stop", "early_stop", 1),
                                    ("--workers", "workers", 0), ("--seed", "seed", 0), ("--folds", "k", 2)):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= least, option, f"an integer of at least {least}", value)
        need(self.seed <= SEED_MAX, "--seed", f"at most {SEED_MAX} (2**64 - 1, torch's seed range)", self.seed)
        need(0 <= self.fold < self.k, "--fold", f"between 0 and {self.k - 1} (--folds {self.k})", self.fold)
        need(math.isfinite(self.lr) and 0 < self.lr <= 1, "--lr", "in (0, 1]", self.lr)
        need(math.isfinite(self.semantic) and 0 <= self.semantic <= 10, "--semantic", "in [0, 10]", self.semantic)
        need(math.isfinite(self.perceptual) and 0 <= self.perceptual <= 10, "--perceptual", "in [0, 10]",
             self.perceptual)
        need(math.isfinite(self.parts_weight) and 0 <= self.parts_weight <= 100, "--parts-weight", "in [0, 100]",
             self.parts_weight)
        need(self.ssim_weight is None or (math.isfinite(self.ssim_weight) and 0 <= self.ssim_weight <= 10),
             "--ssim-weight", "in [0, 10]", self.ssim_weight)
        # Four 2x poolings (five in the smp encoders) need sides that are multiples of 32.
        # Faces are loaded and degraded at SOURCE_SIZE (the kernels' scale): a larger --size would
        # only enlarge them.
        need(isinstance(self.size, int) and 32 <= self.size <= data.SOURCE_SIZE and self.size % 32 == 0, "--size",
             f"a multiple of 32 between 32 and {data.SOURCE_SIZE} (the faces are degraded at "
             f"{data.SOURCE_SIZE}x{data.SOURCE_SIZE}; a larger size would only enlarge them)", self.size)
        if self.patch is not None:
            need(isinstance(self.patch, int) and 32 <= self.patch <= self.size and self.patch % 32 == 0,
                 "--patch", f"a multiple of 32 between 32 and --size ({self.size})", self.patch)
        if self.samples_per_epoch is not None:
            need(self.samples_per_epoch >= self.batch, "--samples-per-epoch",
                 f"at least --batch ({self.batch})", self.samples_per_epoch)
            # whole batches only: the loader drops a last, partial one
            need(self.samples_per_epoch % self.batch == 0, "--samples-per-epoch",
                 f"a multiple of --batch ({self.batch})", self.samples_per_epoch)
        if self.val_faces is not None:
            need(self.val_faces >= 1, "--val-faces", "at least 1", self.val_faces)
        need(0 < self.test_fraction < 1, "test_fraction", "between 0 and 1", self.test_fraction)

    def model_config(self):
        if self.task == "deblur":
            base = SMFDConfig()
        else:  # --set arch=unet|unetplusplus trains an smp baseline instead of the mask generator
            base = SegBaselineConfig() if "arch" in self.config else MaskNetConfig()
        return with_overrides(base, self.config)


class EpochSampler(Sampler):
    """A fresh permutation of the faces each epoch, repeated to ``samples`` and split by rank.

    It yields ``pass * n + face`` so that every draw of an epoch has its own random stream.
    """

    def __init__(self, n: int, samples: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.samples, self.seed, self.rank, self.world = n, samples, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        rng = data.epoch_rng(self.seed, self.epoch, "order")
        passes = math.ceil(self.samples / self.n)
        order = np.concatenate([rng.permutation(self.n) + p * self.n for p in range(passes)])
        # every rank the same count, so that all take the same number of steps: one rank's extra
        # batch would wait forever for the others' gradients
        usable = self.samples - self.samples % self.world
        return order[:usable][self.rank::self.world].tolist()

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def training_records(s: TrainSettings) -> tuple[list, list]:
    """The run's (training, validation) faces, every file checked: too few faces or a bad file is
    an InputError before any network is built. Each dataset is split by its own ids, so one photo
    in two datasets (the shared FFHQ sample holds re-encoded CelebA-HQ faces) can cross the split:
    copies of held-out test faces (the datasets' own and the benchmark's) are left out, and so are
    training faces that are copies of validation faces, which would flatter every validation."""
    by_root = {root: data.open_dataset(root) for root in s.data}
    if s.task == "mask" or s.mask_source == "gt":  # every face needs its true mask
        for root, found in by_root.items():
            if not any(r.has_mask for r in found):
                raise InputError(f"{root}: has no faces with masks, which this training needs"
                                 + (" (or use --mask-source generated or mix with --mask-model)"
                                    if s.task == "deblur" else "") + "; leave it out")
        by_root = {root: [r for r in found if r.has_mask] for root, found in by_root.items()}
    records = [r for found in by_root.values() for r in found]
    train = data.select(records, "train", s.k, s.fold, s.test_fraction)
    val = data.select(records, "val", s.k, s.fold, s.test_fraction)
    val = val[: s.val_faces] if s.val_faces else val
    data.check_files(train + val)
    held_out = data.select(records, "test", s.k, s.fold, s.test_fraction)
    benchmark = benchmark_data()
    if benchmark.is_dir() and benchmark.resolve() not in {Path(root).resolve() for root in s.data}:
        held_out += [r for r in data.select(data.open_dataset(benchmark), "test") if r.has_mask]
    data.check_files(held_out)  # read for their thumbnails
    print(f"[smfd train] looking for copies of the {len(held_out)} test faces among the {len(train) + len(val)} "
          "training and validation faces (thumbnails: seconds per ten thousand)", flush=True)
    copies = data.copies_of(train + val, held_out)
    if copies:
        print(f"[smfd train] left out {len(copies)} training/validation faces that are copies of held-out "
              "test faces: " + data.named_copies(copies), flush=True)
        train, val = ([r for r in part if r.id not in copies] for part in (train, val))
    twins = data.copies_of(train, val)
    if twins:
        print(f"[smfd train] left out {len(twins)} training faces that are copies of validation faces: "
              + data.named_copies(twins), flush=True)
        train = [r for r in train if r.id not in twins]
    if not train or not val:
        raise InputError(f"too few faces: {len(train)} for training, {len(val)} for validation")
    if (s.samples_per_epoch or len(train)) < s.batch:  # drop_last would leave no batch
        raise InputError(f"{len(train)} training faces fill no batch of --batch {s.batch}: "
                         "give a smaller --batch, --samples-per-epoch, or more faces")
    return train, val


def run_inputs(s: TrainSettings, train: list, val: list) -> dict:
    """What a run reads beside its settings, recorded in state.pt so that a resume finds it unchanged:
    its training and validation faces ([count, sha256 of their ids]) and the sha256 of the networks it
    reads each time it starts (--mask-model, --teacher; --init only starts a fresh run)."""
    def digest(name: str) -> str:
        try:
            return sha256_of(getattr(s, name))
        except OSError as exc:
            raise InputError(f"--{name.replace('_', '-')} {getattr(s, name)}: cannot be read "
                             f"({exc.strerror or exc})") from None

    faces = {key: [len(records), hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest()]
             for key, records in (("train_faces", train), ("val_faces", val))}
    return faces | {name: digest(name) for name in ("mask_model", "teacher") if getattr(s, name)}


def saved_state(s: TrainSettings, inputs: dict | None, device: str | torch.device = "cpu") -> dict | None:
    """The state.pt of the run folder ``s.out`` when it is a run of these settings and ``inputs``
    (run_inputs; None: not checked, for a check before the faces are read) (None: a fresh
    folder); an InputError for a folder that holds something else, before any epoch is trained."""
    out = Path(s.out)
    path = out / "state.pt"
    blocked = [name for name in RUN_FILES if (out / name).exists() and not (out / name).is_file()]
    if blocked:  # found now, not when the first epoch's work is to be saved
        raise InputError(f"{out / blocked[0]}: is in the way of the run's file of that name (a folder?); "
                         "remove it or choose another --out")
    if not path.is_file():
        # Only state.pt says what a run folder holds; without it, weights, a log or settings there
        # are another run's or the user's own (or a finished run's with state.pt deleted): never
        # train over them.
        found = [name for name in RUN_FILES if (out / name).is_file()]
        if found:
            raise InputError(f"{out}: holds {', '.join(found)} but no state.pt to resume from; "
                             "choose another --out (nothing there was changed)")
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, objects beyond tensors and containers
        raise InputError(f"{path}: not a readable training state ({type(exc).__name__}); "
                         "an interrupted copy? Choose another --out") from None
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing or not isinstance(state["settings"], dict):
        raise InputError(f"{path}: not a training state of smfd train (lacks {', '.join(missing) or 'settings'}); "
                         "choose another --out")
    unknown = sorted(set(state["settings"]) - {f.name for f in dataclasses.fields(TrainSettings)})
    if unknown:
        raise InputError(f"{path}: written by another version of smfd train (settings {', '.join(unknown)} "
                         "unknown here); choose another --out")
    try:
        saved = TrainSettings(**_as_read(state["settings"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: its settings are not valid here ({exc}); choose another --out") from None
    changed = settings_changes(saved, s)
    if changed:
        raise InputError(f"{path}: this run folder was trained with other settings ({'; '.join(changed)}); "
                         "repeat its command (only --epochs, --workers and --device may change) "
                         "or choose another --out")
    if inputs is not None:
        check_inputs(path, state, s, inputs)
    return state


def check_inputs(path: Path, state: dict, s: TrainSettings, inputs: dict) -> None:
    """An InputError when the faces or networks a saved run (its state.pt at ``path``) was trained
    on are not ``inputs`` (run_inputs) any more."""
    for key, then in state.get("inputs", {}).items():  # a run saved before they were recorded: unchecked
        now = inputs.get(key)
        if now == then:
            continue
        if key in ("train_faces", "val_faces"):
            which = "training" if key == "train_faces" else "validation"
            raise InputError(f"{path}: the {which} faces differ from the run's ({then[0]} then, {now[0]} now"
                             f"{', other ones' if then[0] == now[0] else ''}: the dataset changed, or what smfd "
                             "train leaves out, such as copies of held-out faces); choose another --out")
        raise InputError(f"{path}: --{key.replace('_', '-')} {getattr(s, key)}: its content changed since "
                         "the run began (another sha256); restore it or choose another --out")


def _distributed(device_name: str) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        dist.init_process_group("nccl" if cuda else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class Trainer:
    def __init__(self, settings: TrainSettings):
        self.s = s = settings
        self.rank, self.world = _distributed(s.device)
        if s.batch % self.world:  # each process takes an equal share of every batch
            raise InputError(f"--batch {s.batch} is not a multiple of the {self.world} processes")
        self.device = pick_device(s.device, self.rank)
        self.out = Path(s.out)
        torch.manual_seed(s.seed)

        # Everything that needs no face is checked before the faces are read (minutes for a large set):
        # a run folder of other settings, the networks named, dlib for the identity monitor. The
        # state read is the one a resumed run continues from (load_state), read once.
        self.saved = saved_state(s, None, self.device)
        self.model = build(s.model_config()).to(self.device, memory_format=torch.channels_last)
        self.init_note = None
        if s.init and self.saved is None:  # a resumed run's weights are its state's
            start = checkpoint.load(s.init, kinds=("deblur",) if s.task == "deblur" else ("mask", "smp"))
            self.init_note = _initialise(self.model, start, s.init, s.init_partial, set(s.config))
        self.mask_model = None
        if s.task == "deblur" and (s.mask_source != "gt" or s.semantic or s.perceptual):
            self.mask_model = checkpoint.load(s.mask_model, self.device, kinds=("mask", "smp"))
            if self.mask_model.config.classes != 5:
                raise InputError(f"--mask-model {s.mask_model}: predicts {self.mask_model.config.classes} "
                                 "classes; SMFD-UNet takes the 5 groups")
            self.mask_model.requires_grad_(False)
        self.teacher = self.load_teacher(s.teacher) if s.teacher else None
        self.references = None  # identity monitor: the validation faces' descriptors, made once
        if s.monitor == "identity":  # dlib's models, checked before the first epoch, not after it
            from .errors import MetricUnavailable
            from .identity import geometry

            try:
                geometry()
            except MetricUnavailable as exc:
                raise InputError(f"--monitor identity: {exc}") from None
        self.train_records, self.val_records = training_records(s)
        self.inputs = run_inputs(s, self.train_records, self.val_records)
        if s.parts_weight and not any(r.has_mask for r in self.train_records):
            raise InputError("--parts-weight needs training faces with masks (it finds the facial parts "
                             "in the true mask); none of the datasets has any")
        if s.semantic and not any(r.has_mask for r in self.train_records):
            raise InputError("--semantic needs training faces with masks (it scores the restored face "
                             "against the true mask); none of the datasets has any")
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=s.lr_factor, patience=s.lr_patience - 1,
            threshold=0.0, min_lr=s.min_lr)
        self.epoch, self.best, self.bad_epochs, self.history = 0, -math.inf, 0, []
        self.best_epoch, self.best_model = None, None
        self.epoch_samples = 0  # training samples of the last epoch, all ranks together

    def load_teacher(self, path: str) -> torch.nn.Module:
        """The frozen network whose outputs are the training targets (distillation): an SMFD-UNet
        that reads the same image and mask, or a mask generator of the same groups (it reads the
        face its own way)."""
        deblur = self.s.task == "deblur"
        teacher = checkpoint.load(path, self.device, kinds=("deblur",) if deblur else ("mask", "smp"))
        same = ("image_channels", "use_mask", "mask_channels", "soft_mask") if deblur else ("classes",)
        if any(getattr(teacher.config, k) != getattr(self.model.config, k) for k in same):
            raise InputError(f"--teacher {path}: differs from the network trained in {', '.join(same)}; "
                             f"{'both must read the same image and mask' if deblur else 'both must predict the same groups'}")
        return teacher.requires_grad_(False).to(memory_format=torch.channels_last)

    # ------------------------------------------------------------ state
    # state.pt is the one record of a run; best.safetensors and log.csv are written from it after
    # it is replaced (atomically), and rewritten from it on resume. So an interruption at any point
    # leaves at most those two files one epoch behind, and the next run puts them back in step.
    def save_state(self) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "best": self.best,
                 "bad_epochs": self.bad_epochs, "history": self.history,
                 "best_epoch": self.best_epoch, "best_model": self.best_model,
                 "settings": dataclasses.asdict(self.s), "inputs": self.inputs}
        write_atomically(self.out / "state.pt", lambda tmp: torch.save(state, tmp), ".pt")
        settings = json.dumps(state["settings"], indent=2)  # the run's settings, readable beside it
        write_atomically(self.out / "settings.json", lambda tmp: tmp.write_text(settings), ".json")

    def load_state(self) -> bool:
        state = self.saved
        if state is None:
            return False
        check_inputs(self.out / "state.pt", state, self.s, self.inputs)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best = state["epoch"], state["best"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]
        self.best_epoch, self.best_model = state.get("best_epoch"), state.get("best_model")
        return True

    def write_outputs(self) -> None:
        """best.safetensors and log.csv from the state (the best weights only when they are new)."""
        best = self.out / "best.safetensors"
        if self.best_model is not None and (not best.is_file() or _epoch_of(best) != self.best_epoch):
            scores = next(r for r in self.history if r["epoch"] == self.best_epoch)
            current = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.best_model)
            checkpoint.save(best, self.model, epoch=self.best_epoch,
                            scores={k: scores[k] for k in scores if k not in LOG_ONLY},
                            settings=dataclasses.asdict(self.s))
            self.model.load_state_dict(current)
        write_atomically(self.out / "log.csv", lambda tmp: _write_log(tmp, self.history), ".csv")

    # ------------------------------------------------------------ steps
    def masks_for(self, batch: dict, generated_share: float, rng: np.random.Generator) -> torch.Tensor:
        """SMFD's mask input: the one-hot ground truth, or for a share of the faces (and every face
        without a mask) the mask generator's prediction, made as at inference: on the whole face
        (then cropped to the patch) and its mirror image, as probabilities when the network takes
        them (``soft_mask``), else as the one-hot of their argmax."""
        labels = batch["mask"].to(self.device)
        masks = one_hot_mask(labels.clamp(min=0), self.model.config.mask_channels)
        if self.mask_model is None:
            return masks
        use = (labels[:, 0, 0] < 0).cpu().numpy() | (rng.random(len(labels)) < generated_share)
        if use.any():
            whole = batch.get("blurry_full", batch["blurry"])[use].to(self.device)
            with torch.no_grad():
                probs = mask_probabilities(self.mask_model, whole)
            if "origin" in batch:
                h, w = labels.shape[-2:]
                probs = torch.stack([p[:, y:y + h, x:x + w] for p, (y, x)
                                     in zip(probs, batch["origin"][use].tolist())])
            masks = masks.clone()
            masks[torch.from_numpy(use).to(self.device)] = generated_mask_input(self.model.config, probs)
        return masks

    def forward(self, batch: dict, net, generated_share: float, rng) -> tuple[torch.Tensor, torch.Tensor]:
        blurry = batch["blurry"].to(self.device).contiguous(memory_format=torch.channels_last)
        with fast_autocast(self.device):
            if self.s.task == "mask":
                logits = net(mask_input(self.model.config, blurry))
                target = batch["mask"].to(self.device)
                if self.teacher is not None and net.training:  # distillation; validation scores the labels
                    # One pass, not the mirror mean of inference: the faces come flipped or not
                    # (augmentation), so the student's mirror mean learns the teacher's.
                    with torch.no_grad():
                        target = self.teacher(mask_input(self.teacher.config, self.teacher_input(batch))).float().softmax(1)
                return logits, segmentation_loss(self.s.loss, logits.float(), target)
            mask = self.masks_for(batch, generated_share, rng) if self.model.config.use_mask else None
            out = net(blurry, mask)
            target = batch["sharp"].to(self.device)
            if self.teacher is not None and net.training:  # distillation; validation still scores the sharp face
                with torch.no_grad():
                    target = self.teacher(self.teacher_input(batch), self.teacher_mask(batch, mask)).float().clamp(0, 1)
        return out, restoration_loss(self.s.loss, out.float(), target, self.pixel_weight(batch), self.s.ssim_weight)

    def teacher_input(self, batch: dict) -> torch.Tensor:
        """The blurry face the teacher reads: the student's, before the JPEG stage where the preset
        has one. The target is then the teacher's restoration of the face without the blocks, which
        the student learns to remove; a teacher given the blocks would sharpen them."""
        blurry = batch.get("blurry_uncompressed", batch["blurry"])
        return blurry.to(self.device).contiguous(memory_format=torch.channels_last)

    def teacher_mask(self, batch: dict, student_mask: torch.Tensor) -> torch.Tensor:
        """The mask the teacher reads: the student's, or with --teacher-masks true the one-hot true
        mask wherever a face has one. The student then learns from the masks it will meet (generated)
        what the teacher makes of the true part shapes, which keep identity far better
        (scripts/identity_analysis.py); faces without a mask give the teacher the student's."""
        if self.s.teacher_masks == "same":
            return student_mask
        labels = batch["mask"].to(self.device)
        known = (labels[:, 0, 0] >= 0)[:, None, None, None]
        return torch.where(known, one_hot_mask(labels.clamp(min=0), student_mask.shape[1]), student_mask)

    def pixel_weight(self, batch: dict) -> torch.Tensor | None:
        """With --parts-weight W, the true facial parts' pixels count 1 + W in the loss. They are a
        few percent of a face but carry most of its identity (scripts/identity_analysis.py); faces
        without a mask (label -1) weigh 1 everywhere."""
        if not self.s.parts_weight:
            return None
        parts = batch["mask"].to(self.device) == GROUPS.index("facial parts")
        return 1 + self.s.parts_weight * parts[:, None].float()

    def semantic_term(self, batch: dict, restored: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the frozen mask generator, reading the restored face, against the true
        mask (faces without one are left out). SMFD-UNet follows its mask input: given a wrong
        generated mask it draws a mouth or an eye where the face has none, which costs identity
        (scripts/identity_analysis.py). This term makes such parts cost in training. A patch is
        put back into its whole blurry face first, since the generator parses whole faces."""
        labels = batch["mask"].to(self.device)
        known = labels[:, 0, 0] >= 0
        if not known.any():
            return restored.new_zeros(())
        face = restored.to(self.device).float().clamp(0, 1)
        if "origin" in batch:
            whole = batch["blurry_full"].to(self.device).clone()
            h, w = labels.shape[-2:]
            for i, (y, x) in enumerate(batch["origin"].tolist()):
                whole[i, :, y:y + h, x:x + w] = face[i]
            face = whole
        with fast_autocast(self.device):
            logits = self.mask_model(mask_input(self.mask_model.config, face)[known]).float()
        if "origin" in batch:
            logits = torch.stack([lg[:, y:y + h, x:x + w] for lg, (y, x)
                                  in zip(logits, batch["origin"][known.cpu()].tolist())])
        return F.cross_entropy(logits, labels[known])

    def perceptual_term(self, batch: dict, restored: torch.Tensor) -> torch.Tensor:
        """Distance between the frozen mask generator's encoder features of the restored and the
        sharp patch (mean absolute difference relative to the sharp features' mean, averaged over
        the levels). The generator was trained to find eyes, brows, nose and mouth, so its features
        describe the facial parts, which carry most of a face's identity (scripts/identity_analysis.py)
        and which pixel losses weigh by their few pixels only."""
        config = self.mask_model.config
        with fast_autocast(self.device):
            fake = self.mask_model.features(mask_input(config, restored.to(self.device).float().clamp(0, 1)))
            with torch.no_grad():
                real = self.mask_model.features(mask_input(config, batch["sharp"].to(self.device)))
        return sum((f.float() - r.float()).abs().mean() / r.float().abs().mean().clamp(min=1e-6)
                   for f, r in zip(fake, real)) / len(real)

    def train_epoch(self, loader) -> dict:
        self.net.train()
        share = {"gt": 0.0, "generated": 1.0, "mix": 0.5}[self.s.mask_source]
        rng = data.epoch_rng(self.s.seed, self.epoch, "masks", self.rank)
        # extra terms with a weight: each logged alone (unweighted), so runs with and without compare
        terms = {name: term for name, term in (("semantic", self.semantic_term), ("perceptual", self.perceptual_term))
                 if getattr(self.s, name)}
        sums = dict.fromkeys(terms, 0.0)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.s.epochs}", disable=self.rank != 0,
                   mininterval=1.0 if sys.stderr.isatty() else 60.0, unit="batch", leave=False)
        for batch in bar:
            out, loss = self.forward(batch, self.net, share, rng)
            for name, term in terms.items():
                value = term(batch, out)
                loss = loss + getattr(self.s, name) * value
                sums[name] += value.item() * len(batch["blurry"])
            value = loss.item()
            if not math.isfinite(value):  # a step on it would make every weight nan, silently
                raise InputError(f"epoch {self.epoch + 1}: the training loss is {value} after {count} samples; "
                                 "lower --lr or check the data (state.pt keeps the epochs before)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += value * len(batch["blurry"])
            count += len(batch["blurry"])
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        self.epoch_samples = count * self.world
        losses = {"train_loss": total / max(count, 1)}
        losses.update({f"train_{name}": value / max(count, 1) for name, value in sums.items()})
        return losses

    @torch.no_grad()
    def validate(self, loader, blurry_input: bool = False) -> dict:
        """The validation figures of the network, or (deblur, ``blurry_input``) of the blurry faces
        themselves."""
        self.model.eval()
        # validate with the masks users will give it (one pass; the Restorer adds the mirror image's)
        share = 0.0 if self.s.mask_source == "gt" else 1.0
        rng = np.random.default_rng(0)
        seg = metrics.SegmentationScore(self.model.config.classes) if self.s.task == "mask" else None
        scores = {"psnr": [], "ssim": [], "colour_shift": []}
        outputs, targets = [], []
        for batch in loader:
            out = batch["blurry"] if blurry_input else self.forward(batch, self.model, share, rng)[0]
            if seg is not None:
                for p, t in zip(out.argmax(1).cpu().numpy(), batch["mask"].numpy()):
                    seg.add(p, t)
                continue
            for o, t in zip(out.clamp(0, 1).cpu().numpy(), batch["sharp"].numpy()):
                o, t = to_uint8(o.transpose(1, 2, 0)), to_uint8(t.transpose(1, 2, 0))
                scores["psnr"].append(metrics.psnr(o, t))
                scores["ssim"].append(metrics.ssim(o, t))
                scores["colour_shift"].append(metrics.mean_colour_shift(o, t))
                if self.s.monitor == "identity":
                    outputs.append(o)
                    targets.append(t)
        if seg is not None:
            return {"dice": seg.mean_dice(), "jaccard": seg.mean_jaccard()}
        result = {k: float(np.mean(v)) for k, v in scores.items()}
        if self.s.monitor == "identity":
            result.update(self.identity_scores(outputs, targets))
        return result

    def identity_scores(self, outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict:
        """Mean descriptor distance of the restored validation faces to the sharp ones, and the share
        under dlib's same-person threshold. The sharp faces' boxes and descriptors are made once:
        the validation set is fixed."""
        from .identity import SAME_PERSON, References

        if self.references is None:
            self.references = References(targets)
        assert len(outputs) == len(self.references), "the validation set changed between epochs"
        d = np.array([self.references.distance(i, o) for i, o in enumerate(outputs)])
        return {"id_distance": float(d.mean()), "same_person": float((d < SAME_PERSON).mean())}

    def print_references(self, loader) -> None:
        """What a deblur run starts from, scored as every epoch is: the blurry validation faces,
        and with --init the initial weights, so that each epoch compares with both."""
        rows = [("blurry input", self.validate(loader, blurry_input=True))]
        if self.s.init:
            rows.append(("--init weights before training", self.validate(loader)))
        for name, scores in rows:
            print(f"[smfd train] validation, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                  flush=True)

    # ------------------------------------------------------------ loop
    def loaders(self):
        s = self.s
        classes = self.model.config.classes if s.task == "mask" else 5
        options = degrade.PRESETS[s.preset]
        train_set = data.FaceDataset(self.train_records, s.size, s.patch, options, seed=s.seed, classes=classes,
                                     augment=data.Augment() if s.augment else None,
                                     full_face=self.mask_model is not None and s.patch is not None,
                                     uncompressed=self.teacher is not None and options.jpeg)
        sampler = EpochSampler(len(self.train_records), s.samples_per_epoch or len(self.train_records),
                               s.seed, self.rank, self.world)
        per_rank = s.batch // self.world
        train = DataLoader(train_set, per_rank, sampler=sampler, num_workers=s.workers, drop_last=True,
                           pin_memory=self.device.type == "cuda")
        val_set = data.FaceDataset(self.val_records, s.size, None, augment=None, seed=0,
                                   classes=classes, fixed=True)
        val = DataLoader(val_set, max(1, min(s.batch, 8)), num_workers=s.workers)
        return train_set, sampler, train, val

    def run(self) -> dict:
        s, main = self.s, self.rank == 0
        resumed = self.load_state()  # (run_lock removes a folder it made where no file was saved)
        self.saved = None  # taken over by the model, optimizer and history: not held for the whole run
        if main and resumed:  # a run killed while saving (SIGKILL, out of memory) left its temporary copy
            for stale in self.out.iterdir():
                if TEMPORARY.fullmatch(stale.name) and stale.is_file():
                    stale.unlink()
        if main:
            n = count_parameters(self.model)["total"]
            print(f"[smfd train] {s.task}: {n:,} parameters, {len(self.train_records)} training / "
                  f"{len(self.val_records)} validation faces, device {self.device}, world {self.world}"
                  + (f", resumed after epoch {self.epoch}" if resumed else ""), flush=True)
            if self.init_note and not resumed:
                print(f"[smfd train] initialised with {self.init_note}", flush=True)
            if resumed:
                self.write_outputs()  # catch up with an interruption after the last state.pt
        train_set, sampler, train, val = self.loaders()
        if main and not resumed and s.task == "deblur":
            self.print_references(val)
        sign = -1.0 if s.monitor == "identity" else 1.0  # a distance: lower is better
        column = "id_distance" if s.monitor == "identity" else s.monitor
        while self.epoch < s.epochs and self.bad_epochs < s.early_stop:
            start = time.time()
            train_set.set_epoch(self.epoch)
            sampler.set_epoch(self.epoch)
            losses = self.train_epoch(train)
            # NCCL broadcasts only GPU tensors; gloo (CPU) takes either
            verdict = torch.zeros(1, device=self.device if self.device.type == "cuda" else "cpu")
            if main:
                scores = self.validate(val)
                verdict[0] = sign * scores[column]
            if self.world > 1:
                dist.broadcast(verdict, 0)
            value = float(verdict[0])
            self.scheduler.step(value)
            improved = value > self.best
            self.best, self.bad_epochs = (value, 0) if improved else (self.best, self.bad_epochs + 1)
            self.epoch += 1
            if main:
                seen = (self.history[-1].get("samples", 0) if self.history else 0) + self.epoch_samples
                # lr: the rate after this epoch's scheduler step, the one the next epoch trains at
                row = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"], **losses,
                       **scores, "seconds": round(time.time() - start, 1), "samples": seen}
                self.history.append(row)
                if improved:
                    self.best_epoch = self.epoch
                    self.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.save_state()
                self.write_outputs()
                print(f"[smfd train] epoch {self.epoch}: loss {losses['train_loss']:.4f}, "
                      + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                      + (" (best)" if improved else ""), flush=True)
        if self.world > 1:
            dist.barrier()
        if main and self.epoch and not (self.out / "best.safetensors").is_file():
            raise InputError(f"{self.out}: none of the {self.epoch} validations gave a number for {column}; "
                             "no best.safetensors was written")
        return {"best": sign * self.best, "monitor": column, "epochs": self.epoch, "out": str(self.out)}


# The files of a run folder, state.pt the one record (see Trainer.save_state).
RUN_FILES = ("state.pt", "best.safetensors", "log.csv", "settings.json")
# write_atomically's unfinished copies of them (a user's own "tmp_notes.csv" is not one)
TEMPORARY = re.compile(re.escape(PARTIAL_PREFIX) + r"[a-z0-9_]{8}\.(pt|safetensors|csv|json)")
STATE_KEYS = ("model", "optimizer", "scheduler", "epoch", "best", "bad_epochs", "history", "settings")
LOG_ONLY = ("epoch", "lr", "train_loss", "train_semantic", "train_perceptual", "seconds", "samples")
# Settings a resumed run may change: they do not alter what is trained.
RESUMABLE = ("epochs", "workers", "device", "out")


# How a setting is given to smfd train, where it is not --its-name (the last three: Python only)
OPTION_NAMES = {"task": "the task (smfd train TASK)", "data": "the DATA folders", "k": "--folds",
                "config": "--set/--ablation", "augment": "--no-augment", "test_fraction": "test_fraction",
                "lr_factor": "lr_factor", "min_lr": "min_lr"}


def settings_changes(saved: TrainSettings, wanted: TrainSettings) -> list[str]:
    """'--option: run folder X, command Y' for every setting that differs (paths compared resolved)."""
    def norm(name: str, value):
        if name == "data":
            return tuple(str(Path(d).resolve()) for d in value)
        if name in ("init", "mask_model", "teacher") and value:
            return str(Path(value).resolve())
        return value

    changes = []
    for f in dataclasses.fields(TrainSettings):
        a, b = norm(f.name, getattr(saved, f.name)), norm(f.name, getattr(wanted, f.name))
        if f.name not in RESUMABLE and a != b:
            if f.name == "augment":  # the option says the opposite
                a, b = not a, not b
            changes.append(f"{OPTION_NAMES.get(f.name, '--' + f.name.replace('_', '-'))}: run folder {a!r}, "
                           f"command {b!r}")
    return changes


def _as_read(settings: dict) -> dict:
    """A run's saved settings without what it never read: a state.pt written before such options
    were refused (a --mask-model no mask came from, a --mask-source for a network without a mask
    input, a dataset named twice) resumes under the command without them."""
    s = dict(settings)
    if s.get("task") == "mask":
        s["mask_source"], s["mask_model"] = "gt", None
    elif (s.get("config") or {}).get("use_mask") is False:
        s["mask_source"] = "gt"
    if s.get("mask_source", "gt") == "gt" and not (s.get("semantic") or s.get("perceptual")):
        s["mask_model"] = None
    first: dict[str, str] = {}
    for d in s.get("data", ()):
        first.setdefault(str(Path(d).resolve()), d)
    s["data"] = tuple(first.values())
    return s


def _epoch_of(path: Path) -> int | None:
    try:
        return checkpoint.read_metadata(path)["info"].get("epoch")
    except Exception:  # an unreadable best.safetensors is simply written again
        return None


def _write_log(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _initialise(model: torch.nn.Module, start: torch.nn.Module, path: str, partial: bool,
                named: set[str] = frozenset()) -> str:
    """Load ``start``'s weights into ``model``: all of them (their layouts must agree, and so must
    every setting of their configurations that the command did not name with --set), or with
    ``partial`` those whose name and shape fit, e.g. a shipped network's encoders into one with a
    lighter decoder. Returns a line saying what was taken."""
    mine, theirs = model.state_dict(), start.state_dict()
    fits = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not partial:
        if len(fits) != len(mine) or len(theirs) != len(mine):
            raise InputError(f"{path}: its network ({start.config}) does not fit the one being trained "
                             f"({model.config}); --init-partial takes the tensors that fit")
        # Settings without tensors (residual, match_input_mean, soft_mask, ...) change what the
        # weights compute: one that differs and was not named is a forgotten --set.
        forgotten = [f.name for f in dataclasses.fields(model.config) if f.name not in named
                     and getattr(start.config, f.name) != getattr(model.config, f.name)]
        if forgotten:
            keep = " ".join(f"--set {k}={json.dumps(getattr(start.config, k), separators=(',', ':'))}"
                            for k in forgotten)
            raise InputError(f"{path}: its network differs from the one being trained in "
                             f"{', '.join(forgotten)}; add {keep} to train it further (or --set another value "
                             "to change it, --init-partial to take only its tensors)")
        model.load_state_dict(theirs)
        return f"all {len(mine)} tensors from {path}"
    if not fits:
        raise InputError(f"{path}: none of its tensors fits the network being trained ({model.config})")
    model.load_state_dict(fits, strict=False)
    share = sum(v.numel() for v in fits.values()) / sum(v.numel() for v in mine.values())
    return (f"{len(fits)} of {len(mine)} tensors ({share:.0%} of the parameters) from {path}; "
            "the rest start fresh")


def train(settings: TrainSettings) -> dict:
    # torchrun's other processes share rank 0's folder and its lock
    held = run_lock(Path(settings.out)) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    with held:
        return Trainer(settings).run()


LOCK = ".smfd-train.lock"  # in the run folder while a run trains there


@contextlib.contextmanager
def run_lock(out: Path):
    """Held while a run trains into ``out``: a second run into the same folder (another
    `smfd train`, or `smfd eval --thesis-tables`, whoever runs it) is refused before any work,
    since the two would overwrite each other's state.pt epoch by epoch. An flock on a file in the
    folder, which goes with a killed run's process (such a run may leave the file, and a folder
    made for it, behind: the next run takes them over); otherwise a folder made for it is removed
    again when the run saved nothing there."""
    path = out / LOCK
    with no_empty_folder_left(out):
        while True:
            try:
                out.mkdir(parents=True, exist_ok=True)
                # read-only: flock needs no more, and another user may resume in a shared folder
                fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
            except OSError as exc:
                raise InputError(f"{out}: cannot be written ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(f"{out}: another training run is using this folder now; wait for it to "
                                 "end or choose another --out (nothing there was changed)") from None
            try:  # the file locked may be one a run that just ended removed: then lock the new one
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: whoever opened it before retries
            os.close(fd)


def cross_validate(settings: TrainSettings) -> list[dict]:
    """k-fold cross-validation: one run per fold in ``out/fold<i>``, each validated on its fold."""
    runs = [dataclasses.replace(settings, fold=fold, out=str(Path(settings.out) / f"fold{fold}"))
            for fold in range(settings.k)]
    for run in runs:  # a file in any fold's way, too few faces or another run's state is named
        check_folder(run.out, f"fold {run.fold}'s folder")  # before the first fold trains
        saved_state(run, run_inputs(run, *training_records(run)))
    return [{"fold": run.fold, **train(run)} for run in runs]
