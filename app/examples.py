"""Faces the app offers as examples: the public-domain astronaut portrait that scikit-image
ships, and optionally the faces of a dataset folder given on the command line (never copied
into the project)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smfd import data, degrade, labels
from smfd.blur_files import apply_to_photo, rng_for_file
from smfd.errors import InputError
from smfd.faces import astronaut_face

SOURCE_SIZE = data.SOURCE_SIZE  # the pipeline's kernel sizes are meant for 512x512 faces
MAX_DATASET_EXAMPLES = 1000  # a dropdown of all 30,000 CelebAMask-HQ faces would not help anyone
BUILTIN_STEM = "astronaut"
BUILTIN = f"{BUILTIN_STEM} (scikit-image, public domain)"
SEEDS = 2**32  # the seed boxes' range: numpy takes any integer, but a longer one makes a file name too long


@dataclass(frozen=True)
class Example:
    name: str
    record: data.FaceRecord | None = None  # None: the built-in portrait

    @property
    def stem(self) -> str:
        """What the files made from it are named after."""
        return BUILTIN_STEM if self.record is None else self.name

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The sharp face at 512x512 and its 5-group ground-truth mask (None if unknown)."""
        if self.record is None:
            return astronaut_face(), None
        image, classes = data.load_face(self.record, SOURCE_SIZE)
        return image, None if classes is None else labels.to_groups(classes)


def find_examples(folder: str | Path | None) -> list[Example]:
    examples = [Example(BUILTIN)]
    if folder:
        records = data.open_dataset(folder)[:MAX_DATASET_EXAMPLES]
        examples += [Example(r.id, r) for r in records]
    return examples


def seed_from(value, limit: int | None = SEEDS) -> int:
    """A seed as the app takes it, in a box (empty: 0) or an API call: a whole number from 0, and
    below ``limit`` where there is one (the boxes' seed names the files made with it)."""
    if value is None:
        return 0
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0 or (limit is not None and value >= limit):
        upto = f" to {limit - 1}" if limit is not None else ""
        raise InputError(f"the seed must be a whole number from 0{upto}, got {value!r}")
    return int(value)


# the Blur lab and the API refuse options with every stage off, as `smfd blur` does
NOTHING_DEGRADED = "every stage is switched off: the result would be the sharp face itself"


def blurred(image: np.ndarray, seed: int, name: str,
            options: degrade.PipelineOptions = degrade.PipelineOptions()) -> tuple[np.ndarray, degrade.Recipe]:
    """Degrade a sharp RGB face as ``smfd blur --seed`` degrades a file called ``name`` (the thesis
    pipeline by default): the same recipe, the same pixels (a grey face's in three equal channels)."""
    recipe = degrade.sample_recipe(rng_for_file(seed, Path(name)), options)
    return apply_to_photo(image, recipe), recipe
