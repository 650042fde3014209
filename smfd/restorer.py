"""Restorer: the mask generator + SMFD-UNet behind two calls, ``mask`` and ``restore``.

Inputs are aligned face crops (RGB uint8 HxWx3) of any size: they are processed at 256x256 and
returned at their own size. Whole photos go through :mod:`smfd.faces` first.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from . import checkpoint, labels
from .images import InputError, check_rgb, to_float, to_uint8
from .models import one_hot_mask, rgb_to_gray
from .runtime import fast_autocast, pick_device

WEIGHTS_DIR = Path(__file__).parent / "weights"
MASK_WEIGHTS = "mask_generator.safetensors"
DEBLUR_WEIGHTS = "smfd_unet.safetensors"
WORK_SIZE = 256


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (width, height): area-averaging down, bicubic up."""
    h, w = image.shape[:2]
    if (w, h) == size:
        return image
    shrink = size[0] * size[1] < w * h
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


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
        folder = Path(weights) if weights else WEIGHTS_DIR
        paths = [folder / MASK_WEIGHTS, folder / DEBLUR_WEIGHTS]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"model weights not found: {', '.join(missing)}")
        dev = pick_device(device)
        return cls(checkpoint.load(paths[0], dev), checkpoint.load(paths[1], dev), dev)

    # ------------------------------------------------------------ tensors
    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None].to(self.device)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def mask_probabilities(self, image: np.ndarray) -> np.ndarray:
        """Per-group probabilities at 256x256, float32 256x256x5."""
        small = resize_to(check_rgb(image), (WORK_SIZE, WORK_SIZE))
        with fast_autocast(self.device):
            logits = self.mask_model(rgb_to_gray(self._tensor(small)))
        return logits.float().softmax(1)[0].permute(1, 2, 0).cpu().numpy()

    # ------------------------------------------------------------ public API
    def mask(self, image: np.ndarray) -> np.ndarray:
        """The 5-group label map (uint8 0..4) at the input's size."""
        h, w = check_rgb(image).shape[:2]
        groups = self.mask_probabilities(image).argmax(-1).astype(np.uint8)
        return cv2.resize(groups, (w, h), interpolation=cv2.INTER_NEAREST)

    @torch.no_grad()
    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Deblur an aligned face crop. ``mask``: a 5-group label map of any size (else generated)."""
        h, w = check_rgb(image).shape[:2]
        small = resize_to(image, (WORK_SIZE, WORK_SIZE))
        if mask is None:
            groups = self.mask_probabilities(image).argmax(-1)
        else:
            groups = cv2.resize(labels.check_groups(mask), (WORK_SIZE, WORK_SIZE),
                                interpolation=cv2.INTER_NEAREST)
        return resize_to(self.deblur_at_work_size(small, groups), (w, h))

    @torch.no_grad()
    def deblur_at_work_size(self, image: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """SMFD-UNet on a 256x256 face and its 256x256 group map -> 256x256 RGB uint8."""
        x = self._tensor(image)
        m = one_hot_mask(torch.from_numpy(groups.astype(np.int64))[None].to(self.device))
        with fast_autocast(self.device):
            out = self.deblur_model(x, m.contiguous(memory_format=torch.channels_last))
        return to_uint8(out.float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy())
