"""Core metrics as pure functions over images (SPEC section 2).

PSNR, SSIM and MSE take uint8 RGB images of the same shape (the benchmark works at 256x256);
Dice and Jaccard take integer label maps. SSIM follows the protocol exactly: Gaussian window with
sigma 1.5 (truncated at 3.5 sigma, an 11x11 window), K1 = 0.01, K2 = 0.03, data range 255,
population covariances, the window-radius border dropped, then the mean over channels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB on the 0..255 scale; identical images give inf."""
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(255.0 ** 2 / err)


SSIM_TRUNCATE = 3.5  # the Gaussian window's radius in sigmas


def ssim_radius(sigma: float = 1.5) -> int:
    """The SSIM window's radius in pixels: the border that ssim leaves out."""
    return int(SSIM_TRUNCATE * sigma + 0.5)


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-pixel SSIM (HxW float64, the mean over channels), border included: where it is lost."""
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    radius = ssim_radius(sigma)
    if min(a.shape[:2]) < 2 * radius + 1:
        raise ValueError(f"images of {a.shape[1]}x{a.shape[0]} are smaller than the SSIM window")
    c1, c2 = (k1 * 255.0) ** 2, (k2 * 255.0) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return gaussian_filter(img, sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return np.mean(maps, 0)


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    r = ssim_radius(sigma)
    return float(ssim_map(a, b, sigma, k1, k2)[r:-r, r:-r].mean())


def mean_colour_shift(output: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute difference of the per-channel means, in 0..255 levels (colour fidelity)."""
    a, b = _pair(output, target)
    return float(np.abs(a.reshape(-1, a.shape[-1]).mean(0) - b.reshape(-1, b.shape[-1]).mean(0)).mean())


def local_colour_error(output: np.ndarray, target: np.ndarray, sigma: float = 16.0) -> float:
    """Mean absolute difference of output and target after a Gaussian blur of ``sigma`` pixels, in
    0..255 levels: colour and shading errors at the scale of face regions (at 256x256: cheeks,
    hair), which the per-channel means of :func:`mean_colour_shift` average away."""
    a, b = _pair(output, target)
    spatial = (sigma, sigma) + (0,) * (a.ndim - 2)  # blur across the image, not across channels
    return float(np.abs(gaussian_filter(a - b, spatial)).mean())


# ---------------------------------------------------------------- segmentation

def confusion_counts(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """Per class: [intersection, |pred|, |target|] pixel counts, shape (n, 3)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {target.shape}")
    for name, arr in (("prediction", pred), ("target", target)):
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"{name} labels outside 0..{n - 1}")
    pred, target = pred.ravel().astype(np.int64), target.ravel().astype(np.int64)
    inter = np.bincount(target[pred == target], minlength=n)
    return np.stack([inter, np.bincount(pred, minlength=n), np.bincount(target, minlength=n)], 1)


def dice_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-class Dice; a class absent from both prediction and target scores nan (not counted)."""
    inter, p, t = counts.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p + t > 0, 2 * inter / (p + t), np.nan)


def jaccard_from_counts(counts: np.ndarray) -> np.ndarray:
    inter, p, t = counts.T.astype(np.float64)
    union = p + t - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def dice(pred: np.ndarray, target: np.ndarray, n: int = 5) -> np.ndarray:
    return dice_from_counts(confusion_counts(pred, target, n))


def jaccard(pred: np.ndarray, target: np.ndarray, n: int = 5) -> np.ndarray:
    return jaccard_from_counts(confusion_counts(pred, target, n))


class SegmentationScore:
    """Dataset-level Dice and Jaccard: pixel counts summed over all images, then per class, then
    the mean over classes (background included, as the thesis does)."""

    def __init__(self, n: int = 5):
        self.n = n
        self.counts = np.zeros((n, 3), np.int64)

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.counts += confusion_counts(pred, target, self.n)

    def dice(self) -> np.ndarray:
        return dice_from_counts(self.counts)

    def jaccard(self) -> np.ndarray:
        return jaccard_from_counts(self.counts)

    def mean_dice(self) -> float:
        return float(np.nanmean(self.dice()))

    def mean_jaccard(self) -> float:
        return float(np.nanmean(self.jaccard()))
