"""Restorer: the mask generator + SMFD-UNet behind one call per task.

Inputs are aligned face crops (RGB uint8 HxWx3) of any size: they are processed at 256x256 and
returned at their own size. Whole photos go through :mod:`smfd.photos`, which restores each
face's aligned crop with the same call, :meth:`Restorer.restore_face`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from . import checkpoint, labels
from .data import WORK_SIZE
from .engines import calibration_faces, engine_for, make_engine, threads_asked
from .errors import InputError
from .images import check_rgb, is_grey, resize_labels, resize_to, to_float, to_uint8
from .models import (MaskNetConfig, SMFDConfig, build, generated_mask_input, one_hot_mask, size_multiple,
                     with_overrides)
from .runtime import native_bf16, pick_device, torch_threads

WEIGHTS_DIR = Path(__file__).parent / "weights"
MASK_WEIGHTS = "mask_generator.safetensors"
DEBLUR_WEIGHTS = "smfd_unet.safetensors"
WORK = (WORK_SIZE, WORK_SIZE)
# px at 256: differences wider than this are colour, not blur (see with_input_colours). Chosen on
# the validation faces (benchmark_model.py --split val --colour-sigmas ...): 48 keeps the least
# local colour error there and gives back most of the SSIM that 16 took from the restoration.
COLOUR_SIGMA = 48.0
KEEP_COLOURS = True  # the default of every caller: the same face gets the same colours everywhere
# Fine detail of a face larger than 256 px within this many robust standard deviations of zero is
# taken for noise (with_fine_detail): a usual two, the one value tried.
DETAIL_CORING = 2.0


def weight_files(folder: str | Path | None = None) -> tuple[Path, Path]:
    """(mask generator, SMFD-UNet) weights in ``folder``; by default the shipped ones."""
    folder = WEIGHTS_DIR if folder is None else Path(folder)  # "" is a folder named, not the default
    return folder / MASK_WEIGHTS, folder / DEBLUR_WEIGHTS


def find_weights(folder: str | Path | None = None) -> tuple[Path, Path]:
    """:func:`weight_files`, refused (InputError) where the folder is a file or lacks one of them."""
    mask_path, deblur_path = weight_files(folder)
    if folder is not None and Path(folder).is_file():  # e.g. one of the two files, or an image
        raise InputError(f"{folder}: a file, not a weights folder (one holding {MASK_WEIGHTS} and "
                         f"{DEBLUR_WEIGHTS})")
    missing = [str(p) for p in (mask_path, deblur_path) if not p.is_file()]
    if missing:
        raise InputError(f"model weights not found: {', '.join(missing)}")
    return mask_path, deblur_path


def load_networks(weights: str | Path | None = None, device: str | torch.device = "cpu"
                  ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(mask generator, SMFD-UNet) from the folder ``weights`` (default: the shipped ones), each
    rebuilt from the config stored beside its weights."""
    mask_path, deblur_path = find_weights(weights)
    mask = checkpoint.load(mask_path, device, kinds=("mask", "smp"))
    deblur = checkpoint.load(deblur_path, device, kinds=("deblur",))
    if mask.config.classes != len(labels.GROUPS) or deblur.config.mask_channels != len(labels.GROUPS):
        raise InputError(f"{mask_path} predicts {mask.config.classes} classes and {deblur_path} reads "
                         f"{deblur.config.mask_channels} mask channels: the restorer needs both to be the "
                         f"{len(labels.GROUPS)} groups")
    # What the restorer feeds them, checked here: else a folder of such networks failed at the
    # first face, or in the OpenVINO conversion with a multi-line trace.
    if deblur.config.image_channels != 3:
        raise InputError(f"{deblur_path} reads {deblur.config.image_channels} image channels: the restorer "
                         "gives it the RGB face (3)")
    channels = getattr(mask.config, "in_channels", 3)
    if channels not in (1, 3):
        raise InputError(f"{mask_path} reads {channels} channels: the restorer gives a mask generator the "
                         "grey (1) or RGB (3) face")
    if isinstance(mask.config, MaskNetConfig):
        side, factor = int(WORK_SIZE * mask.config.input_scale), size_multiple(len(mask.config.encoder))
        if side % factor:
            raise InputError(f"{mask_path} looks at the {WORK_SIZE} px face at input_scale "
                             f"{mask.config.input_scale:g}, {side} px: its encoder needs a multiple of {factor}")
    return mask, deblur


def save_random_weights(folder: str | Path, mask_config=None, deblur_config=None, seed: int = 0) -> Path:
    """A weights folder of randomly initialised networks of the real architectures (default
    configurations unless given), fp16 like the shipped files: for tests and benchmarks whose
    results must not depend on trained values. The same ``seed`` gives the same files."""
    torch.manual_seed(seed)
    folder = Path(folder)
    for path, config in zip(weight_files(folder), (mask_config or MaskNetConfig(), deblur_config or SMFDConfig())):
        checkpoint.save(path, build(config).eval(), half=True)
    return folder


def random_weights_like(folder: str | Path, base: str | Path | None = None, mask_changes: dict | None = None,
                        deblur_changes: dict | None = None) -> Path:
    """Random-init networks of the configurations in the weights folder ``base`` (default: the
    shipped ones), some fields changed (``with_overrides``), saved into ``folder``: for timings,
    which do not depend on the weights' values. A TypeError or ValueError names a bad change."""
    mask, deblur = (model.config for model in load_networks(base))
    return save_random_weights(folder, with_overrides(mask, mask_changes or {}),
                               with_overrides(deblur, deblur_changes or {}))


def with_input_colours(restored: np.ndarray, blurry: np.ndarray, sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """Give the restored face the blurry face's low frequencies (colour, shading) and keep its own
    detail. Blur preserves local means, so a faithful deblur changes nothing here; what it removes is
    the colour and brightness shift the thesis reports (chapter 5), which would show as a step where
    a restored face is pasted into its photo."""
    r = restored.astype(np.float32)
    difference = blurry.astype(np.float32) - r
    h, w = difference.shape[:2]
    # A blur this wide is smooth on a coarser grid: halve the grid while sigma stays >= 8 of its
    # pixels (within a level of the full-size blur, at a fraction of its cost; tests/test_restorer.py).
    f = 1
    while sigma / (2 * f) >= 8 and h % (2 * f) == 0 and w % (2 * f) == 0:
        f *= 2
    small = cv2.resize(difference, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else difference
    shift = cv2.GaussianBlur(small, (0, 0), sigma / f)
    if f > 1:
        shift = cv2.resize(shift, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(r + shift), 0, 255).astype(np.uint8)


def with_fine_detail(restored: np.ndarray, image: np.ndarray, low: np.ndarray,
                     where: np.ndarray | None = None) -> np.ndarray:
    """``restored`` (scaled up from the networks' 256 px) plus the finest detail of ``image`` that
    its 256 px copy ``low`` (scaled up alike) lost, less its typical size: noise, the bulk of that
    detail on a degraded face, is dropped and edges are kept. On held-out 512 px faces a sharp one
    restored as a crop went from 31.3 to 32.9 dB (fine detail 0.38 -> 0.71 of its own) and a
    degraded one stayed at 24.3 dB; uncored, the noise came back (README, scripts/large_faces.py)."""
    detail = image.astype(np.float32) - low.astype(np.float32)
    sample = detail if where is None else detail[where]  # ``where``: the pixels the face covers
    noise = DETAIL_CORING * 1.4826 * np.median(np.abs(sample)) if sample.size else 0.0  # a robust s.d.
    kept = np.sign(detail) * np.maximum(np.abs(detail) - noise, 0)
    return np.clip(np.rint(restored.astype(np.float32) + kept), 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Restoration:
    image: np.ndarray  # the restored face, RGB uint8 at the input's size
    groups: np.ndarray  # the 5-group map (uint8 0..4) that guided it, at the input's size
    generated: bool  # whether the mask generator made ``groups``


# What restore_face computes from given weights; scores stored under it are made anew when it
# changes. 2: colours kept at 48 px; 3: SMFD-UNet averaged over the face and its mirror image.
PATH_VERSION = 3


class Restorer:
    """``engine``: see :mod:`smfd.engines` (``auto``: OpenVINO on a CPU where installed, else
    PyTorch). ``threads``: inference threads (default: ``$SMFD_THREADS`` or one per core)."""

    def __init__(self, mask_model: torch.nn.Module, deblur_model: torch.nn.Module,
                 device: str | torch.device = "cpu", engine: str = "pytorch", threads: int | None = None):
        self.device = torch.device(device)
        self.mask_model = mask_model.to(self.device, memory_format=torch.channels_last).eval()
        self.deblur_model = deblur_model.to(self.device, memory_format=torch.channels_last).eval()
        self.engine = make_engine(engine, self.mask_model, self.deblur_model, self.device, WORK_SIZE,
                                  threads, calibration_faces)

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, device: str = "auto", engine: str = "auto",
                        threads: int | None = None) -> "Restorer":
        """Load the shipped weights, or ``mask_generator.safetensors`` and ``smfd_unet.safetensors``
        from the folder ``weights``; each network is rebuilt from the config stored beside its
        weights. Works offline."""
        dev = cls.check_options(weights, device, threads, engine)
        return cls(*load_networks(weights, dev), dev, engine, threads)

    @staticmethod
    def check_options(weights: str | Path | None = None, device: str = "auto",
                      threads: int | None = None, engine: str = "auto") -> torch.device:
        """What :meth:`from_pretrained` is given, checked in milliseconds before the networks load
        (a command checks it before its inputs' long checks): the weights folder holds both files,
        the device exists, the engine runs there and is installed, $SMFD_THREADS and $SMFD_BF16
        are usable. Returns the device."""
        dev = pick_device(device)
        engine_for(engine, dev)
        if threads is None:
            threads_asked()
        native_bf16(dev.type)
        find_weights(weights)
        return dev

    # ------------------------------------------------------------ network inputs
    def work_tensor(self, image: np.ndarray) -> torch.Tensor:
        """The face at 256x256 as the networks take it: 1x3x256x256 float32 in [0, 1]."""
        x = torch.from_numpy(to_float(resize_to(check_rgb(image), WORK))).permute(2, 0, 1)[None]
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    def mask_tensor(self, groups: np.ndarray) -> torch.Tensor:
        """A given 5-group map as SMFD-UNet takes it: the one-hot at 256x256 (1x5x256x256)."""
        small = torch.from_numpy(resize_labels(labels.check_groups(groups), WORK).astype(np.int64))
        return one_hot_mask(small[None]).to(self.device).contiguous(memory_format=torch.channels_last)

    def deblur_inputs(self, image: np.ndarray, mask: np.ndarray | None = None):
        """SMFD-UNet's inputs for a face as every restoration makes them: (image tensor, mask tensor,
        5-group map). The map is ``mask`` as given, else the generator's at 256x256, whose mask tensor
        is the one-hot of its groups or its probabilities (``soft_mask``; generated_mask_input)."""
        x = self.work_tensor(image)
        if mask is None:
            p = self.engine.probabilities(x)
            return x, generated_mask_input(self.deblur_model.config, p), _argmax(p)
        return x, self.mask_tensor(mask), labels.check_groups(mask)

    # ------------------------------------------------------------ public API
    def restore_face(self, image: np.ndarray, mask: np.ndarray | None = None, *,
                     keep_colours: bool = KEEP_COLOURS) -> Restoration:
        """Deblur an aligned face crop: the one path every caller takes.

        ``mask``: a 5-group label map of any size, used as given (one-hot); without it the mask
        generator makes one on the same device, fed to SMFD-UNet as the one-hot of its groups, or
        as its per-group probabilities where the weights were trained so (``soft_mask``). Both
        networks read the face and its mirror image and average the two (see the engines).
        ``keep_colours``: give the result the input's colours at scales wider than
        ``COLOUR_SIGMA`` (:func:`with_input_colours`), so that a colour shift of the network cannot show.
        The networks work at 256x256; the result comes back at the input's size, a larger face with
        its own finest detail (:func:`with_fine_detail`), and a grey face in grey.
        """
        h, w = check_rgb(image).shape[:2]
        with torch_threads(self.engine.torch_threads):
            x, m, groups = self.deblur_inputs(image, mask)
            groups = resize_labels(groups, (w, h))
            out = self.engine.deblur(x, m)
            restored = to_uint8(out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy())
        small = resize_to(image, WORK)
        if keep_colours:
            restored = with_input_colours(restored, small)
        restored = resize_to(restored, (w, h))
        if max(w, h) > WORK_SIZE:  # a face larger than the networks see keeps its finest detail
            restored = with_fine_detail(restored, image, resize_to(small, (w, h)))
        if is_grey(image):  # a black-and-white face stays black and white
            restored = np.repeat(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        return Restoration(restored, groups, mask is None)

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None, *,
                keep_colours: bool = KEEP_COLOURS) -> np.ndarray:
        """The restored face of :meth:`restore_face` (RGB uint8 at the input's size)."""
        return self.restore_face(image, mask, keep_colours=keep_colours).image

    def mask_probabilities(self, image: np.ndarray) -> np.ndarray:
        """Per-group probabilities at 256x256, float32 256x256x5: the mean over the face and its
        mirror image (version 1's generator, 151 test faces: mean Dice 0.712 -> 0.717)."""
        with torch_threads(self.engine.torch_threads):
            return self.engine.probabilities(self.work_tensor(image))[0].permute(1, 2, 0).cpu().numpy()

    def mask(self, image: np.ndarray) -> np.ndarray:
        """The 5-group label map (uint8 0..4) at the input's size."""
        h, w = check_rgb(image).shape[:2]
        with torch_threads(self.engine.torch_threads):
            return resize_labels(_argmax(self.engine.probabilities(self.work_tensor(image))), (w, h))


def _argmax(probabilities: torch.Tensor) -> np.ndarray:
    """The group of each pixel (uint8 HxW) of one face's 1xCxHxW probabilities; numpy's argmax
    takes 1.5 ms here where PyTorch's takes 5."""
    return probabilities[0].cpu().numpy().argmax(0).astype(np.uint8)
