"""Baselines without weights: the blurry input itself, and Richardson-Lucy deconvolution."""

from __future__ import annotations

import numpy as np

from smfd.images import check_rgb, to_float, to_uint8

from .interface import Method, MethodInfo

PSF_SIGMA_PER_256 = 2.0
ITERATIONS = 20


class Blurry(Method):
    def __init__(self, info: MethodInfo):
        self.info = info

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return check_rgb(image).copy()


def gaussian_psf(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    psf = np.outer(g, g)
    return psf / psf.sum()


class Deconvolution(Method):
    """Richardson-Lucy with a fixed Gaussian PSF whose width scales with the image.

    The pipeline's blur is unknown at test time (a random mix of Gaussian and motion layers, then
    down/up-scaling), so the PSF is not estimated per image: an isotropic Gaussian of sigma 2.0 px
    per 256 px of width stands in for it, about the geometric middle of the Gaussian widths the
    pipeline uses (sigma 2.6..6.5 px at 512, i.e. 1.3..3.3 px at 256; geometric mean 2.07). Few iterations keep noise in check.
    """

    def __init__(self, info: MethodInfo, iterations: int = ITERATIONS):
        self.info = info
        self.iterations = iterations

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        from skimage.restoration import richardson_lucy

        x = to_float(check_rgb(image)).astype(np.float64)
        psf = gaussian_psf(PSF_SIGMA_PER_256 * image.shape[1] / 256)
        # Reflect-pad so the circular boundary of the FFT convolution does not ring at the edges.
        pad = psf.shape[0]
        padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        out = np.stack([richardson_lucy(padded[..., c], psf, num_iter=self.iterations, clip=True)
                        for c in range(3)], -1)
        return to_uint8(out[pad:-pad, pad:-pad])
