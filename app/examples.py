"""Faces the app offers as examples: the public-domain astronaut portrait that scikit-image
ships, and optionally the faces of a dataset folder given on the command line (never copied
into the project)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smfd import data, degrade, labels

SOURCE_SIZE = data.SOURCE_SIZE  # the pipeline's kernel sizes are meant for 512x512 faces
MAX_DATASET_EXAMPLES = 1000  # a dropdown of all 30,000 CelebAMask-HQ faces would not help anyone
BUILTIN = "astronaut (scikit-image, public domain)"


@dataclass(frozen=True)
class Example:
    name: str
    record: data.FaceRecord | None = None  # None: the built-in portrait

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The sharp face at 512x512 and its 5-group ground-truth mask (None if unknown)."""
        if self.record is None:
            return astronaut_face(), None
        image, classes = data.load_face(self.record, SOURCE_SIZE)
        return image, None if classes is None else labels.to_groups(classes)


def astronaut_face() -> np.ndarray:
    """Eileen Collins' NASA portrait as an aligned 512x512 face crop (a fresh copy each call)."""
    return _aligned_astronaut().copy()


@functools.cache
def _aligned_astronaut() -> np.ndarray:
    """The face found in the portrait (dlib, as for whole photos) and warped by the similarity
    that puts its eyes and mouth corners on the template of the CelebA-HQ training crops, so the
    example has the geometry the networks were trained on. Deterministic: same pixels every run."""
    from skimage import data as skdata

    from smfd.faces import alignment, detect_faces, warp

    photo = skdata.astronaut()
    # The face is ~100 px wide: the detector finds it at the photo's own size, no enlarging needed.
    faces = detect_faces(photo, rotations=False, pixels=photo.shape[0] * photo.shape[1])
    if not faces:
        raise RuntimeError("no face found in scikit-image's astronaut portrait")
    face = max(faces, key=lambda f: f.size)
    # Bicubic: the face is enlarged about 3x to the 512 crop.
    return warp(photo, alignment(face.landmarks, SOURCE_SIZE), (SOURCE_SIZE, SOURCE_SIZE),
                interpolation=cv2.INTER_CUBIC)


def find_examples(folder: str | Path | None) -> list[Example]:
    examples = [Example(BUILTIN)]
    if folder:
        records = data.open_dataset(folder)[:MAX_DATASET_EXAMPLES]
        examples += [Example(r.id, r) for r in records]
    return examples


def blurred(image: np.ndarray, seed: int,
            options: degrade.PipelineOptions = degrade.PipelineOptions()) -> tuple[np.ndarray, degrade.Recipe]:
    """Degrade a sharp face with a recipe drawn from ``seed`` (the thesis pipeline by default)."""
    recipe = degrade.sample_recipe(np.random.default_rng(seed), options)
    return degrade.apply(image, recipe), recipe
