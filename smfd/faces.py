"""Faces in whole photos: detection, landmarks, and alignment to the geometry of the training crops.

Detection and landmarks run offline on dlib with the CC0 models of the ``face_recognition_models``
package (HOG or CNN face detector, 68-point shape predictor). A face is aligned by the similarity
transform that puts its eye centres and mouth corners on :data:`TEMPLATE`, the mean positions of
those points in aligned CelebA-HQ crops (all 800 of celebamask_mini, its held-out test faces
included: scripts/measure_face_template.py).

Coordinates are (x, y) pixels; an affine ``matrix`` is 2x3 and maps photo points to crop points.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

from .data import SOURCE_SIZE, WORK_SIZE
from .images import resize_to

CROP_SIZE = WORK_SIZE  # faces are aligned straight to the networks' working size

# Eye centres (left, right in the image), then mouth corners (left, right), as fractions of the crop
# side. Measured by scripts/measure_face_template.py: the mean of each point over the 800 aligned
# 512x512 CelebA-HQ crops of ../shared/data/celebamask_mini (HOG detector + 68-point predictor;
# a face was found in 790 of them).
TEMPLATE = np.array([
    [0.3786, 0.4814],  # std over the crops: 0.0087, 0.0067
    [0.6212, 0.4819],  # 0.0082, 0.0066
    [0.3910, 0.7343],  # 0.0182, 0.0189
    [0.6095, 0.7347],  # 0.0196, 0.0187
], np.float64)
# The mean HOG detector box in the same crops (x0, y0, x1, y1, fractions): the shape predictor was
# trained on such boxes, so landmarks are re-measured on the aligned crop inside this box.
TEMPLATE_BOX = (0.1960, 0.3070, 0.7894, 0.8998)

# Pixels the detector sees per photo, whatever the photo's size. Measured here on 2 busy cores:
# HOG ~3 s and ~350 MB at 12 MP; the CNN ~12 s and ~1 GB at 1 MP (its memory grows ~1 GB per MP).
DETECT_PIXELS = {"hog": 12_000_000, "cnn": 1_000_000}
MAX_UPSCALE = 4.0  # small photos are enlarged up to 4x so that faces down to ~16 px are found
ROTATED_PIXELS = 3_000_000  # lighter budget for each rotated retry
ROTATIONS = ((90, -90, 180), (45, -45, 135, -135))  # turns tried, in rounds, when upright finds none
DETECTORS = ("hog", "cnn")
# A square photo whose single face sits this close to the template (alignment_offset: the largest
# shift of a crop corner between the face's alignment and plain resizing, as a fraction of the
# side) is an aligned crop already. scripts/measure_alignment_offsets.py --faces 60 measured, on
# 256x256 crops of celebamask_mini's held-out faces: median 0.024, p99 0.125, max 0.151 (sharp),
# median 0.036, p90 0.077 (blurred, where a face was found); realworld/cropped: max 0.108.
ALIGNED_TOLERANCE = 0.16

_EYE_LEFT, _EYE_RIGHT = slice(36, 42), slice(42, 48)  # 68-point layout, image left/right
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


# ---------------------------------------------------------------- models

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"


def models_dir() -> Path:
    """The model folder of ``face_recognition_models``, found without importing the package
    (its ``__init__`` needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models is not installed (pip install face_recognition_models)")
    return Path(spec.submodule_search_locations[0]) / "models"


@functools.cache
def detector_of(kind: str):
    """dlib's face detector: "hog" (frontal HOG + SVM) or "cnn" (MMOD), loaded once."""
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(models_dir() / "mmod_human_face_detector.dat"))
    raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {kind!r}")


@functools.cache
def landmark_predictor():
    """dlib's 68-point landmark predictor, loaded once."""
    import dlib

    return dlib.shape_predictor(str(models_dir() / LANDMARKS_68))


def find_boxes(image: np.ndarray, detector: str = "hog") -> list[tuple[np.ndarray, float]]:
    """Face boxes in an RGB uint8 image as ([x0, y0, x1, y1], score), at the image's own scale."""
    if detector == "cnn":
        return [(_rect_array(d.rect), float(d.confidence)) for d in detector_of("cnn")(image, 0)]
    rects, scores, _ = detector_of(detector).run(image, 0, 0.0)
    return [(_rect_array(r), float(s)) for r, s in zip(rects, scores)]


def landmarks_in(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The 68 landmarks (68x2 float64) of the face inside ``box`` = [x0, y0, x1, y1]."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = landmark_predictor()(image, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def _rect_array(rect) -> np.ndarray:
    return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)


# ---------------------------------------------------------------- geometry

def key_points(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks -> the 4 template points: eye centres, mouth corners (4x2)."""
    return np.stack([landmarks[_EYE_LEFT].mean(0), landmarks[_EYE_RIGHT].mean(0),
                     landmarks[_MOUTH_LEFT], landmarks[_MOUTH_RIGHT]])


def fit_template(points: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 similarity (least squares) taking 4 key points (eye centres, mouth corners) onto
    the template in a ``size`` x ``size`` crop."""
    transform = SimilarityTransform.from_estimate(np.asarray(points, np.float64), TEMPLATE * size)
    if not transform:
        raise ValueError(f"cannot align degenerate landmarks: {transform}")
    return transform.params[:2].copy()


def alignment(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Photo -> aligned crop matrix of a face's 68 landmarks."""
    return fit_template(key_points(landmarks), size)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map Nx2 points through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def scale_of(matrix: np.ndarray) -> float:
    """The (uniform) scale factor of a similarity matrix."""
    return float(math.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def resizing(source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """The 2x3 matrix of ``cv2.resize`` from (width, height) ``source`` to ``target``: pixel
    centres sit at integers, so pixel u of the source lands at (u + 0.5) * scale - 0.5."""
    fx, fy = target[0] / source[0], target[1] / source[1]
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]], np.float64)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix applying ``inner`` first, then ``outer``."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int = cv2.BORDER_REFLECT101,
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``cv2.warpAffine`` that reads only the part of ``image`` it needs and shrinks that part with
    area averaging first when the matrix scales down, so that small outputs do not alias.

    ``size`` is (width, height). Pixels beyond the image's edge follow ``border``.
    """
    w, h = size
    corners = apply(invert(matrix), [(0, 0), (w, 0), (0, h), (w, h)])
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 3
    # Keep the region inside the image: beyond it, ``border`` extends the image's own edge.
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 <= x0 or y1 <= y0:  # the output lies wholly outside the image
        x0, y0, x1, y1 = 0, 0, image.shape[1], image.shape[0]
    region = image[y0:y1, x0:x1]
    local = compose(matrix, np.array([[1, 0, x0], [0, 1, y0]], np.float64))
    s = scale_of(matrix)
    if s < 0.8:  # shrink first: bilinear warping alone would skip most source pixels
        full = (region.shape[1], region.shape[0])
        shrunk = (max(1, round(full[0] * s)), max(1, round(full[1] * s)))
        region = cv2.resize(region, shrunk, interpolation=cv2.INTER_AREA)
        local = compose(local, resizing(shrunk, full))
    return cv2.warpAffine(region, local, (w, h), flags=interpolation, borderMode=border)


# ---------------------------------------------------------------- faces

@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Face:
    landmarks: np.ndarray  # 68x2, photo coordinates
    score: float  # detector confidence

    @functools.cached_property  # computed once per face: size, crop and paste-back all use it
    def matrix(self) -> np.ndarray:
        """Photo -> aligned CROP_SIZE crop."""
        return alignment(self.landmarks, CROP_SIZE)

    @property
    def size(self) -> float:
        """Width of the face (the detector box of the template) in photo pixels."""
        return (TEMPLATE_BOX[2] - TEMPLATE_BOX[0]) * CROP_SIZE / scale_of(self.matrix)

    @property
    def centre(self) -> np.ndarray:
        return key_points(self.landmarks).mean(0)


def refine(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Re-measure the landmarks on the upright, full-resolution aligned crop: detection may have
    run on a shrunken or rotated copy, where landmarks are coarse."""
    matrix = alignment(landmarks, CROP_SIZE)
    crop = warp(image, matrix, (CROP_SIZE, CROP_SIZE))
    box = np.array(TEMPLATE_BOX) * CROP_SIZE
    return apply(invert(matrix), landmarks_in(crop, box))


def _view(image: np.ndarray, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled by ``scale`` and rotated by ``angle`` degrees (counter-clockwise) on a canvas
    that holds it whole; returns (view, 2x3 matrix photo -> view)."""
    h, w = image.shape[:2]
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    view = resize_to(image, (sw, sh), upscale=cv2.INTER_LINEAR)
    matrix = resizing((w, h), (sw, sh))
    if angle % 360 == 0:
        return np.ascontiguousarray(view), matrix  # dlib reads only contiguous arrays
    rotation = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    cw, ch = math.ceil(sw * cos + sh * sin), math.ceil(sw * sin + sh * cos)
    rotation[:, 2] += (cw / 2 - sw / 2, ch / 2 - sh / 2)
    view = cv2.warpAffine(view, rotation, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return view, compose(rotation, matrix)


def _detect_pass(image: np.ndarray, detector: str, pixels: float, angle: float) -> list[Face]:
    h, w = image.shape[:2]
    # A turned copy lies on a canvas of (w + h)^2 / 2 pixels at 45 degrees: about twice w * h for an
    # ordinary photo, whose scale stays as it was, but 40 million for a 9000x9 strip. Bounding the
    # canvas at twice the budget keeps such a strip from taking gigabytes.
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    canvas = (w * cos + h * sin) * (w * sin + h * cos)
    scale = min(MAX_UPSCALE, math.sqrt(pixels / max(w * h, canvas / 2)))
    view, matrix = _view(image, scale, angle)
    back = invert(matrix)
    faces = []
    for box, score in find_boxes(view, detector):
        coarse = apply(back, landmarks_in(view, box))
        faces.append(Face(refine(image, coarse), score))
    return faces


def _distinct(faces: list[Face]) -> list[Face]:
    """Drop a face whose centre lies within half a face of a higher-scoring one (the same face
    found twice, e.g. at two rotations)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(np.linalg.norm(face.centre - k.centre) > 0.5 * max(face.size, k.size) for k in kept):
            kept.append(face)
    return kept


def detect_faces(image: np.ndarray, detector: str = "hog", rotations: bool = True,
                 pixels: float | None = None) -> list[Face]:
    """Every face in an RGB uint8 photo, left to right, with landmarks in photo coordinates.

    The detector sees a copy of the photo resized to ``pixels`` pixels (default
    ``DETECT_PIXELS[detector]``; at most 4x enlarged): with HOG a 6000x4000 photo is searched at
    about 4200x2800, so memory stays bounded and the smallest face found grows with the photo
    (16 px at 0.75 megapixels, 80 px at 24: scripts/measure_detection.py; the CNN's budget is
    smaller). The HOG detector finds upright faces turned up to about +-40 degrees; when the upright pass finds none,
    copies turned in steps of 45 degrees are searched (``rotations``) and the turn with the most
    evidence wins, so a sideways or upside-down photo works. A photo with both upright and strongly
    rotated faces gets only its upright ones.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    pixels = DETECT_PIXELS[detector] if pixels is None else pixels
    faces = _detect_pass(image, detector, pixels, 0)
    for angles in (ROTATIONS if rotations else ()):
        if faces:
            break
        # Keep the turn with the most detector evidence: a single false hit at a wrong turn must
        # not hide the faces that the right turn finds.
        passes = [_detect_pass(image, detector, min(pixels, ROTATED_PIXELS), a) for a in angles]
        faces = max(passes, key=lambda found: sum(f.score for f in found))
    return sorted(_distinct(faces), key=lambda f: (f.centre[0], f.centre[1]))


def alignment_offset(face: Face, width: int, height: int) -> float:
    """How far a photo of ``width`` x ``height`` is from being the face's aligned crop: the largest
    distance between where the face's alignment and plain resizing put a corner of the crop, as a
    fraction of the crop's side (0: the photo is the aligned crop, at any resolution)."""
    resize = np.array([[CROP_SIZE / width, 0, 0], [0, CROP_SIZE / height, 0]], np.float64)
    corners = np.array([(0, 0), (width, 0), (0, height), (width, height)], np.float64)
    return float(np.linalg.norm(apply(face.matrix, corners) - apply(resize, corners), axis=1).max() / CROP_SIZE)


def is_aligned_crop(image: np.ndarray, faces: list[Face]) -> bool:
    """Whether a photo is an aligned face crop already: square, with one face at the geometry of
    the training crops (within :data:`ALIGNED_TOLERANCE`) and any other under a quarter of its
    width (a face in the background, or a false hit: one of 22 px in a 250 px crop of realworld/cropped)."""
    h, w = image.shape[:2]
    if abs(w - h) > 0.01 * max(w, h):
        return False
    main = main_face(faces)
    return main is not None and alignment_offset(main, w, h) <= ALIGNED_TOLERANCE


def main_face(faces: list[Face]) -> Face | None:
    """The largest face when every other one is under a quarter of its width (a face in the
    background, or a false hit); None when there is no face, or two of a size."""
    if not faces:
        return None
    main = max(faces, key=lambda f: f.size)
    return main if all(f is main or f.size < main.size / 4 for f in faces) else None


# ---------------------------------------------------------------- the built-in face
# The public-domain portrait scikit-image ships: the app's example, the int8 engine's calibration.

def astronaut_face() -> np.ndarray:
    """Eileen Collins' NASA portrait as an aligned 512x512 face crop (a fresh copy each call)."""
    return _aligned_astronaut().copy()


@functools.cache
def _aligned_astronaut() -> np.ndarray:
    """The face found in the portrait (dlib, as for whole photos) and warped by the similarity
    that puts its eyes and mouth corners on the template of the CelebA-HQ training crops, so the
    example has the geometry the networks were trained on. Deterministic: same pixels every run."""
    from skimage import data as skdata

    photo = skdata.astronaut()
    # The face is ~100 px wide: the detector finds it at the photo's own size, no enlarging needed.
    faces = detect_faces(photo, rotations=False, pixels=photo.shape[0] * photo.shape[1])
    if not faces:
        raise RuntimeError("no face found in scikit-image's astronaut portrait")
    face = max(faces, key=lambda f: f.size)
    # Bicubic: the face is enlarged about 3x to the 512 crop.
    return warp(photo, alignment(face.landmarks, SOURCE_SIZE), (SOURCE_SIZE, SOURCE_SIZE),
                interpolation=cv2.INTER_CUBIC)
