"""Whole photos: find every face, restore its aligned crop, paste it back without a visible seam.

Each face is warped to an aligned 256x256 crop (:mod:`smfd.faces`), masked and deblurred there by
:meth:`~smfd.restorer.Restorer.restore_face` (keeping the crop's colours), and blended back through
the inverse warp with a feathered alpha built from the semantic mask (face skin, facial parts,
hair, accessories; never the background). Only pixels under that alpha can change: the rest of
the photo is returned bit-identical to the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import CROP_SIZE, Face, apply, compose, detect_faces, invert, scale_of, warp
from .images import check_rgb
from .restorer import with_fine_detail

# Face width in px below which a face is left alone: the most degraded training faces keep about
# 76 px of detail (a 304-px face box shrunk 4x); with well under half of that (32 px is 42 %) the
# network would be inventing a face rather than deblurring one.
MIN_FACE = 32
FEATHER = 6.0  # px at 256: Gaussian softening of the mask edge
EDGE_FADE = 16  # px at 256: alpha fades to zero over this band at the crop border, so no box shows


@dataclass
class FaceResult:
    face: Face
    restored: bool  # False: smaller than the minimum size, left untouched
    crop: np.ndarray | None = None  # aligned blurry crop, 256x256x3
    groups: np.ndarray | None = None  # its 5-group mask, 256x256 (0..4)
    result: np.ndarray | None = None  # the restored crop, 256x256x3 (a larger face gets its fine detail in the paste)
    region: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) of the pixels it may change


@dataclass
class PhotoReport:
    faces: list[FaceResult] = field(default_factory=list)
    min_face: float = MIN_FACE

    @property
    def restored(self) -> list[FaceResult]:
        return [f for f in self.faces if f.restored]

    @property
    def too_small(self) -> list[FaceResult]:
        return [f for f in self.faces if not f.restored]

    def summary(self) -> str:
        if not self.faces:
            return "no face found; the photo is returned unchanged"
        n = len(self.faces)
        text = f"{n} face{'s' if n != 1 else ''} found, {len(self.restored)} restored"
        if self.too_small:
            # widths rounded down: "smaller than 32 px: 32 px" (31.6) would read as a contradiction
            where = ", ".join(f"{math.floor(f.face.size)} px at ({f.face.centre[0]:.0f}, {f.face.centre[1]:.0f})"
                              for f in self.too_small)
            text += f", {len(self.too_small)} left untouched (smaller than {self.min_face:g} px: {where})"
        return text


# ---------------------------------------------------------------- the steps

def align_face(image: np.ndarray, face: Face) -> np.ndarray:
    """The face's aligned CROP_SIZE x CROP_SIZE crop (the edge of the photo is mirrored)."""
    return warp(image, face.matrix, (CROP_SIZE, CROP_SIZE))


def _disc(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def paste_alpha(groups: np.ndarray) -> np.ndarray:
    """Feathered float32 weight of the restored pixels: the face, hair and accessories of the mask
    (small holes closed, grown slightly), softened, and faded out towards the crop border."""
    fg = (groups > 0).astype(np.uint8)
    fg = cv2.dilate(cv2.morphologyEx(fg, cv2.MORPH_CLOSE, _disc(15)), _disc(7))
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), FEATHER)
    h, w = groups.shape
    y, x = np.mgrid[0:h, 0:w]
    edge = np.minimum(np.minimum(x, w - 1 - x), np.minimum(y, h - 1 - y)).astype(np.float32)
    fade = np.clip(edge / EDGE_FADE, 0, 1)
    return alpha * fade * fade * (3 - 2 * fade)  # smoothstep: no kink where the fade starts


def paste(out: np.ndarray, restored: np.ndarray, alpha: np.ndarray, matrix: np.ndarray,
          source: tuple[np.ndarray, np.ndarray] | None = None):
    """Blend ``restored`` (a crop, photo->crop ``matrix``) into ``out`` in place with ``alpha``;
    with its ``source``, (the photo, the crop restored, cut from that photo), a face larger than
    the crop keeps the finest detail the crop lost (:func:`~smfd.restorer.with_fine_detail`).
    Returns the (x0, y0, x1, y1) region it may have changed, or None when the crop misses the photo.
    """
    size = restored.shape[1], restored.shape[0]
    corners = apply(invert(matrix), [(0, 0), (size[0], 0), (0, size[1]), size])
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, (out.shape[1], out.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return None
    to_region = compose(np.array([[1, 0, -x0], [0, 1, -y0]], np.float64), invert(matrix))
    region = (int(x1 - x0), int(y1 - y0))
    colour = warp(restored, to_region, region, border=cv2.BORDER_REPLICATE)
    weight = warp(alpha, to_region, region, border=cv2.BORDER_CONSTANT)[..., None]
    base = out[y0:y1, x0:x1]
    if source is not None and scale_of(matrix) < 1:  # a face larger than its crop: keep its finest detail
        photo, crop = source  # the photo's detail, not that of faces pasted into ``out`` before this one
        low = warp(crop, to_region, region, border=cv2.BORDER_REPLICATE)
        colour = with_fine_detail(colour, photo[y0:y1, x0:x1], low, where=weight[..., 0] > 0)
    colour = colour.astype(np.float32)
    blended = np.clip(np.rint(weight * colour + (1 - weight) * base), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(weight > 0, blended, base)  # untouched where alpha is zero
    return int(x0), int(y0), int(x1), int(y1)


# ---------------------------------------------------------------- the whole photo

def restore_photo(image: np.ndarray, restorer, min_face: float = MIN_FACE, detector: str = "hog",
                  rotations: bool = True, faces: list[Face] | None = None) -> tuple[np.ndarray, PhotoReport]:
    """Restore every face of an RGB uint8 photo; returns (new photo, report).

    ``faces``: use these instead of detecting them. Faces narrower than ``min_face`` pixels are
    left untouched and listed in the report. Every crop is read from the input photo, so
    overlapping faces do not feed restored pixels to each other.
    """
    image = check_rgb(image)
    if faces is None:
        faces = detect_faces(image, detector=detector, rotations=rotations)
    out = image.copy()
    report = PhotoReport(min_face=min_face)
    for face in faces:
        if face.size < min_face:
            report.faces.append(FaceResult(face, restored=False))
            continue
        crop = align_face(image, face)
        restored = restorer.restore_face(crop, keep_colours=True)  # no colour step at the seam
        region = paste(out, restored.image, paste_alpha(restored.groups), face.matrix, (image, crop))
        report.faces.append(FaceResult(face, True, crop, restored.groups, restored.image, region))
    return out, report
