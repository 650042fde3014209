"""SMFD-UNet as a method of the lab: with generated masks (``smfd``) or given ones (``smfd-gt-mask``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smfd.errors import InputError

from .interface import Method, MethodInfo


class SMFDMethod(Method):
    def __init__(self, info: MethodInfo, weights: str | Path | None = None, device: str = "cpu",
                 restorer=None):
        from smfd.restorer import Restorer

        self.info = info
        self.restorer = restorer if restorer is not None else Restorer.from_pretrained(weights, device)
        # what made the figures, for the results: the weights folder and the engine that ran it
        self.weights = f"{weights or 'the shipped weights'} ({self.restorer.engine.describe()})"

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if not self.info.needs_mask:
            return self.restorer.restore(image)  # the generated mask, whatever was given
        if mask is None:
            raise InputError(f"{self.info.name}: needs a ground-truth 5-group mask")
        return self.restorer.restore(image, mask)
