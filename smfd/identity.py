"""Identity similarity and landmark distance with dlib's offline models (face_recognition_models),
for the evaluation lab and for training runs that keep their best epoch by identity.

Both compare a restored face with its sharp target. The face box is found once, on the target
(dlib's HOG detector, largest face; the central 80 % of the crop when none is found, since the
faces are aligned crops), and both images are read inside that same box:

* ``id_dist``: the Euclidean distance between dlib's 128-d face-recognition descriptors (ResNet,
  the chip aligned by the 5-point landmarks of each image), dlib's own measure: below
  ``SAME_PERSON`` (0.6) dlib calls the two faces the same person. The headline identity figures
  are its mean and the share of faces under that threshold (``same_person``).
* ``lmd``: mean Euclidean distance between the 68 landmarks of the two images, in pixels of the
  compared images.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .errors import MetricUnavailable
from .faces import LANDMARKS_68, detector_of, landmark_predictor, models_dir

RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
SAME_PERSON = 0.6  # dlib's verification threshold on the descriptor distance


def model_path(name: str) -> Path:
    try:
        path = models_dir() / name
    except ImportError:
        raise MetricUnavailable("the face_recognition_models package is not installed",
                                "pip install face_recognition_models (see requirements.txt)") from None
    if not path.is_file():
        raise MetricUnavailable(f"dlib model {path} is missing", "reinstall face_recognition_models")
    return path


class FaceGeometry:
    """dlib's detector, 5- and 68-point landmark predictors (the first two shared with
    :mod:`smfd.faces`) and face-recognition network."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise MetricUnavailable("dlib is not installed", "pip install dlib-bin (see requirements.txt)") from None
        self.dlib = dlib
        model_path(LANDMARKS_68)  # said plainly when missing, before dlib's own error
        self.detector, self.points68 = detector_of("hog"), landmark_predictor()
        self.points5 = dlib.shape_predictor(str(model_path(LANDMARKS_5)))
        self.recognition = dlib.face_recognition_model_v1(str(model_path(RECOGNITION)))

    def face_box(self, image: np.ndarray):
        faces = self.detector(image, 1)
        if faces:
            return max(faces, key=lambda r: r.area())
        h, w = image.shape[:2]
        return self.dlib.rectangle(int(0.1 * w), int(0.1 * h), int(0.9 * w), int(0.9 * h))

    def landmarks(self, image: np.ndarray, box) -> np.ndarray:
        shape = self.points68(image, box)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def embedding(self, image: np.ndarray, box) -> np.ndarray:
        return np.array(self.recognition.compute_face_descriptor(image, self.points5(image, box)))

    def distances(self, candidates: list[np.ndarray], target: np.ndarray) -> list[float]:
        """Descriptor distance of each candidate to ``target``, all read in the box found once on
        the target, so a blurry face the detector would miss is still compared."""
        reference = References([target], self)
        out = []
        for c in candidates:
            if c.shape != target.shape:
                raise ValueError(f"images differ in shape: {c.shape} vs {target.shape}")
            out.append(reference.distance(0, c))
        return out

    def compare(self, restored: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        """(identity descriptor distance, mean 68-landmark distance in pixels)."""
        if restored.shape != target.shape:
            raise ValueError(f"images differ in shape: {restored.shape} vs {target.shape}")
        restored, target = np.ascontiguousarray(restored), np.ascontiguousarray(target)
        reference = References([target], self)
        box = reference.faces[0][0]
        lmd = float(np.linalg.norm(self.landmarks(restored, box) - self.landmarks(target, box), axis=1).mean())
        return reference.distance(0, restored), lmd


@functools.cache
def geometry() -> FaceGeometry:
    return FaceGeometry()


class References:
    """The sharp faces of a fixed set, each with its face box (found once, on the sharp face) and
    descriptor, so that any number of restorations of the set are compared without detecting again,
    and a blurry face the detector would miss still counts (SPEC section 2)."""

    def __init__(self, sharp_faces, face_geometry: FaceGeometry | None = None):
        self.geometry = face_geometry or geometry()
        self.faces = []
        for sharp in sharp_faces:
            sharp = np.ascontiguousarray(sharp)
            box = self.geometry.face_box(sharp)
            self.faces.append((box, self.geometry.embedding(sharp, box)))

    def __len__(self) -> int:
        return len(self.faces)

    def distance(self, index: int, image: np.ndarray) -> float:
        """Descriptor distance of ``image`` to the sharp face ``index`` (below SAME_PERSON: the same person)."""
        box, sharp = self.faces[index]
        return float(np.linalg.norm(self.geometry.embedding(np.ascontiguousarray(image), box) - sharp))
