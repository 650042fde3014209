"""Image files and the one in-memory convention: RGB, HxWxC, uint8 (or float32 in [0, 1]).

Every conversion between files, arrays and tensors goes through here, and every problem with an
input file becomes an :class:`InputError` whose message names the file and the reason.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # ~10000x10000; larger files are refused rather than risking memory
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class InputError(ValueError):
    """A user-supplied input cannot be used; the message is meant for the user as is."""


def list_images(path: str | Path) -> list[Path]:
    """A file -> [file]; a folder -> its image files, sorted. Raises InputError if missing/empty."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{path}: image is too large ({img.width}x{img.height}, "
                                 f"limit {MAX_PIXELS // 1_000_000} megapixels)")
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image is too large (decompression bomb check)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image file as RGB uint8 HxWx3 (alpha dropped, grayscale expanded), turned
    upright by its EXIF orientation as phone photos need."""
    img = ImageOps.exif_transpose(_open(Path(path)))
    if img.mode in ("I;16", "I;16B", "I", "F"):
        arr = np.asarray(img, np.float64)
        arr = arr / max(arr.max(), 1) * 255
        img = Image.fromarray(arr.astype(np.uint8))
    return np.asarray(img.convert("RGB"))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label PNG (palette or grayscale) as the raw uint8 indices HxW.

    Palette PNGs must go through PIL: OpenCV would return the palette colours instead.
    """
    img = _open(Path(path))
    if img.mode not in ("P", "L", "I;16", "I"):
        raise InputError(f"{path}: a label map must be a palette or grayscale PNG, got mode {img.mode}")
    return np.asarray(img).astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray, overwrite: bool = True) -> Path:
    """Write uint8 HxW or HxWx3 as PNG atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists already (refusing to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return image.astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an in-memory RGB uint8 HxWx3 array (the library's input convention)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name}: expected an RGB uint8 HxWx3 array, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 8:
        raise InputError(f"{name}: image is too small ({image.shape[1]}x{image.shape[0]})")
    return image
