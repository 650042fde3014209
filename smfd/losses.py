"""Training losses and differentiable metrics (torch, NCHW, values in [0, 1])."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(channels: int, sigma: float = 1.5, radius: int = 5, device=None, dtype=None):
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image (Gaussian window, K1=0.01, K2=0.03, data range 1), shape (N,).

    The same definition as :func:`smfd.metrics.ssim` but on the valid region only and with
    zero-free convolution, so it is differentiable; the two agree to about 1e-3.
    """
    c = x.shape[1]
    w = _gaussian_window(c, sigma, device=x.device, dtype=x.dtype)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(t):
        return F.conv2d(t, w, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3))


# The losses each task trains with; the first is the thesis' (and the default).
LOSSES = {"mask": ("dice", "dice+ce"), "deblur": ("mse", "l1", "l1+ssim")}
SSIM_WEIGHT = 0.2  # of (1 - SSIM) beside L1 in 'l1+ssim': about as large as L1 on these faces


def restoration_loss(kind: str, output: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor | None = None, ssim_weight: float | None = None) -> torch.Tensor:
    """'mse' (the thesis), 'l1', or 'l1+ssim' (L1 plus ``ssim_weight``, default ``SSIM_WEIGHT``, x
    (1 - SSIM)). ``weight`` (Nx1xHxW):
    how much each pixel's error counts in the MSE or L1, normalised by its mean so that the
    loss keeps its scale (SSIM stays unweighted)."""
    if kind not in LOSSES["deblur"]:
        raise ValueError(f"unknown restoration loss {kind!r} (mse, l1, l1+ssim)")
    error = (output - target) ** 2 if kind == "mse" else (output - target).abs()
    pixel = error.mean() if weight is None else (error * weight).mean() / weight.mean()
    if kind != "l1+ssim":
        return pixel
    return pixel + (SSIM_WEIGHT if ssim_weight is None else ssim_weight) * (1 - ssim(output, target)).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss: per class over the whole batch, then the mean over classes.
    ``target``: NxHxW labels, or NxCxHxW probabilities (a teacher's)."""
    probs = logits.softmax(1)
    if target.dim() == 3:
        target = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)
    target = target.to(probs.dtype)
    inter = (probs * target).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + target.sum((0, 2, 3))
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


def segmentation_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """'dice' (the thesis) or 'dice+ce' (Dice plus cross-entropy), against NxHxW labels or NxCxHxW
    probabilities."""
    if kind == "dice":
        return dice_loss(logits, target)
    if kind == "dice+ce":
        return dice_loss(logits, target) + F.cross_entropy(logits, target)
    raise ValueError(f"unknown segmentation loss {kind!r} (dice, dice+ce)")
