"""Restorer: the mask generator + SMFD-UNet behind two calls, ``mask`` and ``restore``.

Inputs are aligned face crops (RGB uint8 HxWx3) of any size: they are processed at 256x256 and
returned at their own size. Whole photos go through :mod:`smfd.faces` first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import checkpoint, labels
from .data import WORK_SIZE
from .images import InputError, check_rgb, resize_labels, resize_to, to_float, to_uint8
from .models import one_hot_mask, rgb_to_gray
from .runtime import fast_autocast, pick_device

WEIGHTS_DIR = Path(__file__).parent / "weights"
MASK_WEIGHTS = "mask_generator.safetensors"
DEBLUR_WEIGHTS = "smfd_unet.safetensors"
WORK = (WORK_SIZE, WORK_SIZE)


def weight_files(folder: str | Path | None = None) -> tuple[Path, Path]:
    """(mask generator, SMFD-UNet) weights in ``folder``; by default the shipped ones."""
    folder = Path(folder) if folder else WEIGHTS_DIR
    return folder / MASK_WEIGHTS, folder / DEBLUR_WEIGHTS


class Restorer:
    def __init__(self, mask_model: torch.nn.Module, deblur_model: torch.nn.Module,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.mask_model = mask_model.to(self.device, memory_format=torch.channels_last).eval()
        self.deblur_model = deblur_model.to(self.device, memory_format=torch.channels_last).eval()

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, device: str = "auto") -> "Restorer":
        """Load the shipped weights, or ``mask_generator.safetensors`` and ``smfd_unet.safetensors``
        from the folder ``weights``. Works offline."""
        mask_path, deblur_path = weight_files(weights)
        missing = [str(p) for p in (mask_path, deblur_path) if not p.is_file()]
        if missing:
            raise InputError(f"model weights not found: {', '.join(missing)}")
        dev = pick_device(device)
        return cls(checkpoint.load(mask_path, dev, kinds=("mask", "smp")),
                   checkpoint.load(deblur_path, dev, kinds=("deblur",)), dev)

    # ------------------------------------------------------------ network inputs
    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None].to(self.device)
        return x.contiguous(memory_format=torch.channels_last)

    def mask_input(self, image: np.ndarray) -> torch.Tensor:
        """The mask generator's input: the face at 256x256, grayscale unless the network takes RGB."""
        x = self._tensor(resize_to(check_rgb(image), WORK))
        return rgb_to_gray(x) if self.mask_model.config.in_channels == 1 else x

    def deblur_inputs(self, image: np.ndarray, groups: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """SMFD-UNet's inputs: the face and its mask, both at 256x256. ``groups``: a 5-group label
        map (one-hot to the network), or the mask generator's 256x256x5 probabilities (passed as
        they are to a ``soft_mask`` network, as the one-hot of their argmax to any other)."""
        if groups.ndim == 3:
            if self.deblur_model.config.soft_mask:
                m = torch.from_numpy(np.ascontiguousarray(groups.transpose(2, 0, 1)))[None].to(self.device)
                return self._tensor(resize_to(check_rgb(image), WORK)), m.contiguous(memory_format=torch.channels_last)
            groups = groups.argmax(-1).astype(np.uint8)
        small = resize_labels(labels.check_groups(groups), WORK)
        m = one_hot_mask(torch.from_numpy(small.astype(np.int64))[None].to(self.device))
        return self._tensor(resize_to(check_rgb(image), WORK)), m.contiguous(memory_format=torch.channels_last)

    # ------------------------------------------------------------ public API
    @torch.no_grad()
    def mask_probabilities(self, image: np.ndarray) -> np.ndarray:
        """Per-group probabilities at 256x256, float32 256x256x5: the mean over the face and its
        mirror image (the 5 groups are left-right symmetric), which makes the mask of a mirrored
        face the mirrored mask (shipped weights, 151 test faces: mean Dice 0.712 -> 0.717, +50 ms)."""
        x = self.mask_input(image)
        with fast_autocast(self.device):
            logits = self.mask_model(torch.cat([x, x.flip(-1)]))
        p = logits.float().softmax(1)
        p = (p[0] + p[1].flip(-1)) / 2
        return p.permute(1, 2, 0).cpu().numpy()

    def mask(self, image: np.ndarray) -> np.ndarray:
        """The 5-group label map (uint8 0..4) at the input's size."""
        h, w = check_rgb(image).shape[:2]
        return resize_labels(self.mask_probabilities(image).argmax(-1).astype(np.uint8), (w, h))

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Deblur an aligned face crop. ``mask``: a 5-group label map of any size (else generated)."""
        h, w = check_rgb(image).shape[:2]
        groups = self.mask_probabilities(image) if mask is None else mask
        return resize_to(self.deblur_at_work_size(image, groups), (w, h))

    @torch.no_grad()
    def deblur_at_work_size(self, image: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """SMFD-UNet on a face and its 5-group map (resized to 256x256 where they are not)
        -> the 256x256 RGB uint8 result."""
        x, m = self.deblur_inputs(image, groups)
        with fast_autocast(self.device):
            out = self.deblur_model(x, m)
        return to_uint8(out.float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy())
