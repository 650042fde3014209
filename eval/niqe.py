"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik, 2013); lower is better.

Our implementation of the MATLAB release's algorithm: local mean-subtracted, contrast-normalised
(MSCN) coefficients; per 96x96 block, asymmetric generalised Gaussian fits of the coefficients and
of their products with four neighbours (18 features); the same at half resolution (MATLAB's
antialiased bicubic ``imresize``); a Gaussian fitted to the blocks' 36 features is compared with
the pristine-image model by a Mahalanobis-like distance.

The pristine model (``mu_pris_param``, ``cov_pris_param`` and the 7x7 ``gaussian_window``) is
the one shipped inside the basicsr source package; ``python -m eval.niqe fetch`` (run by
``make install``) takes it from the package registry into the cache. Colour images are scored on
their luma Y (ITU-R BT.601 YCbCr, 16..235, rounded), as basicsr does by default.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma

from smfd.errors import MetricUnavailable
from smfd.images import write_atomically
from smfd.paths import cache_root, sha256_of

BASICSR = "basicsr==1.4.2"
SDIST = "basicsr-1.4.2.tar.gz"
PARAMS_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"
PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
BLOCK = 96


def niqe_dir() -> Path:
    return cache_root() / "niqe"


def params_path() -> Path:
    return niqe_dir() / "niqe_pris_params.npz"


def fetch(force: bool = False) -> Path:
    """Download the basicsr source package with pip and extract the pristine parameters (checked
    against their SHA-256). The package itself is kept beside them for the reference test."""
    target = params_path()
    if target.is_file() and not force and sha256_of(target) == PARAMS_SHA256:
        return target
    niqe_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # --no-binary only for basicsr: its sdist is what holds the file; the build tools pip
        # needs to read the sdist's metadata may come as wheels.
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--no-binary", "basicsr", BASICSR, "-d", tmp], check=True)
        sdist = Path(tmp) / SDIST
        with tarfile.open(sdist) as tar:
            data = tar.extractfile(PARAMS_MEMBER).read()
        got = hashlib.sha256(data).hexdigest()
        if got != PARAMS_SHA256:
            raise RuntimeError(f"{SDIST}: {PARAMS_MEMBER} has SHA-256 {got}, expected {PARAMS_SHA256}")
        source = sdist.read_bytes()
        write_atomically(niqe_dir() / SDIST, lambda tmp: tmp.write_bytes(source), ".tar.gz")
    return write_atomically(target, lambda tmp: tmp.write_bytes(data), ".npz")


@functools.cache
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36), window (7, 7)); raises MetricUnavailable when not fetched."""
    path = params_path()
    if not path.is_file():
        raise MetricUnavailable(f"its pristine-model parameters are not at {path}",
                                "run 'make install' or 'python -m eval.niqe fetch' (needs the package registry)")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != PARAMS_SHA256:  # the published parameters, or no NIQE
        raise MetricUnavailable(f"{path} is not the published pristine model (SHA-256 differs)",
                                "delete it and run 'python -m eval.niqe fetch'")
    with np.load(io.BytesIO(raw)) as p:
        return p["mu_pris_param"].ravel(), p["cov_pris_param"], p["gaussian_window"]


# ---------------------------------------------------------------- features

_ALPHAS = np.arange(0.2, 10.001, 0.001)  # the shape-parameter grid of the MATLAB release
_RHO = gamma(2 / _ALPHAS) ** 2 / (gamma(1 / _ALPHAS) * gamma(3 / _ALPHAS))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, left scale, right scale).
    A block without negative or positive values gives nan scales."""
    x = x.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        left = math.sqrt(np.mean(x[x < 0] ** 2)) if (x < 0).any() else math.nan
        right = math.sqrt(np.mean(x[x > 0] ** 2)) if (x > 0).any() else math.nan
        g = left / right
        r = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
        r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_RHO - r_norm) ** 2)])
    k = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * k, right * k


# Neighbour offsets (rows, columns) of the pairwise products: horizontal, vertical, two diagonals.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def block_features(block: np.ndarray) -> list[float]:
    alpha, left, right = aggd_fit(block)
    feats = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        alpha, left, right = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        feats += [alpha, mean, left, right]
    return feats


def mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    mu = correlate(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + 1)


# ---------------------------------------------------------------- MATLAB's imresize(x, 0.5)

def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1,
                    np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def resize_matrix(n: int, scale: float) -> np.ndarray:
    """The (n*scale x n) matrix of MATLAB's antialiased bicubic resize along one axis, with its
    symmetric boundary (indices reflected, edge sample repeated)."""
    out = int(math.ceil(n * scale))
    width = 4 / scale if scale < 1 else 4.0
    taps = int(math.ceil(width)) + 2
    m = np.zeros((out, n))
    mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])
    for j in range(out):
        centre = (j + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based coordinates, as MATLAB
        first = math.floor(centre - width / 2)
        idx = first + np.arange(taps)
        kernel_scale = scale if scale < 1 else 1.0
        w = kernel_scale * _cubic(kernel_scale * (centre - idx))
        np.add.at(m[j], mirror[(idx - 1) % (2 * n)], w / w.sum())
    return m


def half_size(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    return resize_matrix(h, 0.5) @ image @ resize_matrix(w, 0.5).T


# ---------------------------------------------------------------- score

def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> Y of ITU-R BT.601 YCbCr (MATLAB's rgb2ycbcr, 16..235), rounded, float64."""
    x = rgb.astype(np.float64)
    return np.round(16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255)


def niqe_gray(image: np.ndarray) -> float:
    """NIQE of a grayscale image on the 0..255 scale (HxW float); needs two or more 96x96 blocks."""
    mu_p, cov_p, window = pristine_model()
    image = np.asarray(image, np.float64)
    if image.ndim != 2:
        raise ValueError(f"NIQE takes a grayscale HxW image, got shape {image.shape}")
    rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks, got a "
                         f"{image.shape[1]}x{image.shape[0]} image")
    image = image[:rows * BLOCK, :cols * BLOCK]
    per_scale = []
    for scale in (1, 2):
        coeffs, size = mscn(image, window), BLOCK // scale
        per_scale.append([block_features(coeffs[i * size:(i + 1) * size, j * size:(j + 1) * size])
                          for i in range(rows) for j in range(cols)])
        if scale == 1:
            image = half_size(image)
    feats = np.hstack([np.array(f) for f in per_scale])
    complete = feats[~np.isnan(feats).any(1)]
    if len(complete) < 2:
        raise ValueError("NIQE: fewer than two image blocks have usable statistics (flat image?)")
    with np.errstate(invalid="ignore"):
        mu_d = np.nanmean(feats, 0)
    cov_d = np.cov(complete, rowvar=False)
    d = mu_p - mu_d
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d))


def niqe(rgb: np.ndarray) -> float:
    """NIQE of an RGB uint8 image, on its luma."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}")
    return niqe_gray(luma(rgb))


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m eval.niqe fetch")
    from smfd.cli import run_reported  # a failed download is one line (make install runs this)

    sys.exit(run_reported(lambda: print(f"NIQE pristine parameters: {fetch()}")))
