"""Checked image uploads: every user file is read through smfd.images, with web-sized limits,
and any problem becomes a one-line message in the browser (gr.Error), never a stack trace."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image

from smfd.errors import InputError
from smfd.images import check_rgb, read_groups, read_image

MAX_UPLOAD = "25mb"  # Gradio refuses bigger files before they reach a handler
MAX_PIXELS = 25_000_000  # decoded size limit: a 25 MB PNG can still hold a gigapixel image
# Per-request budgets of the expensive paths, so that one request cannot hold the shared model
# worker for long: blurring at full size (the blur lab without scaling, the blur endpoint) and
# the whole-photo mode (detection, every face, paste-back).
FULL_SIZE_PIXELS = 4_200_000  # 2048x2048: work at an image's full size (blurring, comparing methods)
WHOLE_PHOTO_PIXELS = 16_800_000  # 4096x4096
# Pillow warns from 89 megapixels; the limits above refuse such images with their size named.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def check_declared_size(path: Path | BinaryIO, limit: int, what: str, name: str) -> None:
    """check_pixels on the size the file's header declares (a path or the bytes of an open file),
    before any pixel is decoded."""
    try:
        with Image.open(path) as img:
            size = img.size
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise gr.Error(f"{name}: image is too large for {what} (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                       f"megapixels; the limit is {limit / 1e6:.1f} megapixels)", title="Image too large") from None
    except Exception:  # not an image Pillow knows: read_image names the exact problem
        return
    check_pixels(*size, limit, what, name)


def check_pixels(width: int, height: int, limit: int, what: str, name: str) -> None:
    """gr.Error naming the image, its size and the limit when width x height exceeds it."""
    if width * height > limit:
        raise gr.Error(f"{name}: image is too large for {what} ({width}x{height}, "
                       f"{width * height / 1e6:.1f} megapixels; the limit is {limit / 1e6:.1f} "
                       "megapixels)", title="Image too large")


def read_upload(path: str | Path, name: str | None = None, max_pixels: int = MAX_PIXELS,
                what: str = "the web app") -> np.ndarray:
    """An uploaded image as RGB uint8, or gr.Error naming the file (as the user called it).
    The size is checked from the file's header, before any pixel is decoded."""
    path = Path(path)
    shown = name or path.name
    check_declared_size(path, max_pixels, what, shown)
    try:  # too small for the networks: said now, not by whichever tab uses it later
        return check_rgb(read_image(path), str(path))
    except InputError as exc:
        raise gr.Error(str(exc).replace(str(path), shown), title="Unusable image") from None


def read_mask_upload(path: str | Path, kind: str, name: str | None = None) -> np.ndarray:
    """A label PNG as 5-group labels. ``kind``: 'groups' (values 0..4), 'classes' (the 19
    CelebAMask-HQ classes) or 'auto' (classes when a value above 4 occurs)."""
    path = Path(path)
    shown = name or path.name
    check_declared_size(path, MAX_PIXELS, "a mask", shown)
    try:
        return read_groups(path, kind)
    except InputError as exc:
        message = str(exc).replace(str(path), shown)
        raise gr.Error(message if message.startswith(shown) else f"{shown}: {message}",
                       title="Unusable mask") from None


def checked_editor(max_pixels: int, **kwargs) -> gr.ImageEditor:
    """A gr.ImageEditor whose background, layers and composite are refused over ``max_pixels``
    from their headers, before Gradio decodes them: the page sends them at the editor's size,
    but a call made by hand could send a layer of a hundred megapixels in a file of 150 kB, and
    matching its colours takes about 100 bytes a pixel. (The instance's converter is replaced, as
    in :func:`checked_image`.)"""
    editor = gr.ImageEditor(**kwargs)
    standard = editor.convert_and_format_image

    def convert(file, flatten_on_white: bool = False):
        if file is not None:  # a file the page uploaded, or the bytes of a blob it sent
            source = file.path if isinstance(file, FileData) else io.BytesIO(file)
            check_declared_size(source, max_pixels, "the mask editor", "a layer of the mask editor")
        return standard(file, flatten_on_white)

    editor.convert_and_format_image = convert
    return editor


class Upload(np.ndarray):
    """An uploaded image's pixels (RGB uint8) that know the name of the user's file (without its
    folder), for the names of what is made from it."""
    file_name = "upload"


def checked_image(**kwargs) -> gr.Image:
    """A gr.Image whose uploads go through :func:`read_upload` (an :class:`Upload` out).

    Gradio's own preprocessing would fail on a non-image with a bare "Error"; this one names the
    file and the reason. The instance's preprocess is replaced rather than subclassing gr.Image,
    because Gradio writes a .pyi stub beside any module that defines a component class.
    """
    kwargs.setdefault("format", "png")  # exact pixels (the default webp is lossy)
    kwargs.setdefault("sources", ("upload", "clipboard"))
    image = gr.Image(type="numpy", image_mode="RGB", **kwargs)
    standard = image.preprocess

    def preprocess(payload):
        if payload is None:
            return standard(payload)  # nothing uploaded
        if payload.path is None:  # an inline data URL: the page never sends one, and it would skip the checks
            raise gr.Error("images are accepted as uploaded files only", title="Unusable image")
        image = read_upload(payload.path, payload.orig_name).view(Upload)
        image.file_name = Path(payload.orig_name or "upload").name or "upload"
        return image

    image.preprocess = preprocess
    return image
