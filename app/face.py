"""The face a browser session works on, shared by the Restore, Compare and Learn tabs, and the
pure functions around it: metrics, the mask editor's picture, brush strokes -> labels, downloads."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from smfd import labels, metrics
from smfd.errors import InputError
from smfd.images import resize_labels, resize_to, same_aspect
from smfd.restorer import WORK

EDITOR_SIZE = 512  # the mask editor's longer side: big enough to paint eyes and lips


@dataclass(frozen=True)
class Face:
    name: str
    blurry: np.ndarray  # RGB uint8, the model's input
    sharp: np.ndarray | None = None  # known sharp face (same size) -> PSNR/SSIM
    truth: np.ndarray | None = None  # ground-truth 5-group mask (same size)
    generated: np.ndarray | None = None  # the mask generator's mask
    mask: np.ndarray | None = None  # the mask behind `restored`
    mask_source: str = ""  # "generated", "edited" or "ground truth"
    restored: np.ndarray | None = None
    note: str = ""  # e.g. what whole-photo restoration found
    origin: str = ""  # the file or example a blurred face was made from (name: how), naming its downloads

    @property
    def file_stem(self) -> str:
        """What the face's downloads are named after: its file's name, safe in a file name."""
        return safe_stem(self.origin or self.name)

    @property
    def whole_photo(self) -> bool:
        """``restored`` is the photo with every face found restored and pasted back, not one face."""
        return self.restored is not None and not self.mask_source

    def replace(self, **changes) -> "Face":
        return dataclasses.replace(self, **changes)

    def with_sharp(self, sharp: np.ndarray) -> "Face":
        return self.replace(sharp=fit_to(sharp, self.blurry, "sharp reference"))

    def with_truth(self, truth: np.ndarray) -> "Face":
        return self.replace(truth=fit_to(truth, self.blurry, "ground-truth mask", nearest=True))


def fit_to(image: np.ndarray, reference: np.ndarray, what: str, nearest: bool = False) -> np.ndarray:
    """Resize to the reference's size; a different aspect ratio means a different picture."""
    h, w = reference.shape[:2]
    ih, iw = image.shape[:2]
    if not same_aspect(image.shape, reference.shape):  # the rule of `smfd restore --masks`
        raise InputError(f"the {what} ({iw}x{ih}) does not match the blurry image ({w}x{h})")
    return resize_labels(image, (w, h)) if nearest else resize_to(image, (w, h))


def at_work_size(image: np.ndarray) -> np.ndarray:
    """The benchmark protocol measures at 256x256 (area averaging down; a smaller image is enlarged bicubically)."""
    return resize_to(image, WORK)


def quality(output: np.ndarray, sharp: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM at the working size, as in the benchmark protocol."""
    a, b = at_work_size(output), at_work_size(sharp)
    return metrics.psnr(a, b), metrics.ssim(a, b)


def mean_dice(mask: np.ndarray, truth: np.ndarray) -> float:
    return float(np.nanmean(metrics.dice(mask, truth)))


def report(face: Face) -> str:
    """Markdown: what the restoration used and, when the truth is known, how good it is."""
    if face.mask_source:
        lines = [f"**{face.name}**, restored with the **{face.mask_source}** mask."]
    else:
        lines = [f"**{face.name}**, restored as a whole photo: {face.note}."]
    if face.sharp is not None and face.restored is not None:
        p0, s0 = quality(face.blurry, face.sharp)
        p1, s1 = quality(face.restored, face.sharp)
        lines += ["", "| | PSNR | SSIM |", "|---|---|---|",
                  f"| blurry input | {p0:.2f} dB | {s0:.4f} |",
                  f"| restored | {p1:.2f} dB | {s1:.4f} |",
                  "", "Measured at 256x256 against the sharp face, as in the benchmark protocol."]
    else:
        lines += ["", "No sharp reference for this image, so no PSNR/SSIM (load an example, send "
                  "one from the Blur lab, or upload the sharp face under *Optional references*)."]
    # the mask used against the truth; with the truth used, the generator's (the truth scores itself 100 %)
    which, mask = (("generated", face.generated) if face.mask_source == "ground truth"
                   else (face.mask_source or "generated", face.mask))
    if face.truth is not None and mask is not None:
        lines.append(f"{which.capitalize()} mask vs ground truth: mean Dice "
                     f"{mean_dice(mask, face.truth) * 100:.1f} % over the 5 groups.")
    return "\n".join(lines)


# ---------------------------------------------------------------- the mask editor

def palette_hex() -> list[str]:
    return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in labels.GROUP_PALETTE]


def editor_size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    scale = EDITOR_SIZE / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def editor_value(face: Face) -> dict:
    """The editor's background: the mask as a coloured overlay on the blurry face, no strokes."""
    size = editor_size(face.blurry.shape)
    picture = resize_to(face.blurry, size)
    mask = resize_labels(face.mask, size)
    return {"background": labels.overlay(picture, mask, alpha=0.5), "layers": [], "composite": None}


UNPAINTED = 255


def painted(layers: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Brush strokes (RGBA layers in the group colours) -> group per pixel, -1 where unpainted."""
    out = np.full(shape, -1, np.int16)
    palette = labels.GROUP_PALETTE.astype(np.int32)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            continue
        hit = layer[..., 3] >= 128  # stroke edges are anti-aliased: take the solid part
        distance = ((layer[..., None, :3].astype(np.int32) - palette) ** 2).sum(-1)
        # Colours are matched at the editor's size, then the groups are scaled to the mask's
        # (nearest): matching at a big upload's size would take gigabytes.
        groups = resize_labels(np.where(hit, distance.argmin(-1), UNPAINTED).astype(np.uint8),
                               (shape[1], shape[0]))
        out[groups != UNPAINTED] = groups[groups != UNPAINTED]
    return out


def apply_strokes(mask: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    strokes = painted(layers, mask.shape)
    return np.where(strokes >= 0, strokes, mask).astype(np.uint8)


# ---------------------------------------------------------------- downloads

def safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("._") or "face"


def write_mask_png(path: Path, mask: np.ndarray) -> Path:
    """A palette PNG: the pixel values are the group ids 0..4 (what ``smfd restore --masks``
    reads) and image viewers show the group colours. (putpalette turns the L image into P.)"""
    img = Image.fromarray(labels.check_groups(mask))
    img.putpalette(labels.GROUP_PALETTE.ravel().tolist())
    img.save(path, format="PNG")
    return path
