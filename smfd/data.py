"""Face datasets: three on-disk layouts, deterministic splits, and on-the-fly training samples.

Layouts (detected by :func:`open_dataset`):

* ``merged``  -- ``images/<id>.jpg`` + ``masks/<id>.png`` (palette PNG of the 19 classes), as in
  ``../shared/data/celebamask_mini``;
* ``official`` -- the CelebAMask-HQ release: ``CelebA-HQ-img/<id>.jpg`` (1024x1024) and
  ``CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png`` (512x512, one binary PNG per part);
* ``folder``  -- any folder of face images without masks (e.g. FFHQ).

Every random draw takes an explicit ``numpy.random.Generator``; a training sample's generator is
seeded from (seed, epoch, index), so any sample can be reproduced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from . import degrade, labels
from .errors import InputError
from .images import IMAGE_SUFFIXES, check_image_file, read_image, read_labels, resize_labels

SOURCE_SIZE = 512  # the pipeline's kernel sizes are meant for 512x512 faces
WORK_SIZE = 256  # the networks' working size


@dataclass(frozen=True)
class FaceRecord:
    id: str
    image: Path
    mask: Path | None = None  # merged layout: one palette PNG of class ids
    parts: tuple[tuple[int, Path], ...] = ()  # official layout: (class id, binary part PNG)

    @property
    def has_mask(self) -> bool:
        return self.mask is not None or bool(self.parts)


# ---------------------------------------------------------------- layouts

def detect_layout(root: str | Path) -> str:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: {'not a folder: a dataset is a folder' if root.exists() else 'dataset folder not found'}")
    if (root / "CelebA-HQ-img").is_dir() and (root / "CelebAMask-HQ-mask-anno").is_dir():
        return "official"
    if (root / "images").is_dir():  # masks/ absent: faces without masks, as the layout allows per face
        return "merged"
    return "folder"


def open_dataset(root: str | Path, layout: str = "auto") -> list[FaceRecord]:
    """List the faces of a dataset folder, sorted by id."""
    root = Path(root)
    layout = detect_layout(root) if layout == "auto" else layout
    readers = {"merged": _merged, "official": _official, "folder": _folder}
    if layout not in readers:
        raise InputError(f"unknown dataset layout {layout!r} (choose from {', '.join(readers)})")
    records = readers[layout](root)
    if not records:
        raise InputError(f"{root}: no faces found in the {layout} layout")
    records.sort(key=lambda r: (r.id, r.image.name))
    for a, b in zip(records, records[1:]):  # a.jpg and a.png: one mask, one output name for two faces
        if a.id == b.id:
            raise InputError(f"{b.image}: same name as {a.image.name}; which is the face {a.id}?")
    return records


def _images_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _merged(root: Path) -> list[FaceRecord]:
    records = []
    for img in _images_in(root / "images"):
        mask = root / "masks" / f"{img.stem}.png"
        records.append(FaceRecord(img.stem, img, mask if mask.is_file() else None))
    return records


_PART_ORDER = labels.CLASSES[1:]  # painted in class order: later parts overwrite earlier ones


def _official(root: Path) -> list[FaceRecord]:
    anno = root / "CelebAMask-HQ-mask-anno"
    parts: dict[int, list[tuple[int, Path]]] = {}
    for sub in anno.iterdir():
        if not sub.is_dir():
            continue
        for png in sub.glob("*.png"):
            stem, _, part = png.stem.partition("_")
            if stem.isdigit() and part in _PART_ORDER:
                parts.setdefault(int(stem), []).append((labels.CLASSES.index(part), png))
    records = []
    for img in _images_in(root / "CelebA-HQ-img"):
        if img.stem.isdigit():
            found = tuple(sorted(parts.get(int(img.stem), [])))
            records.append(FaceRecord(img.stem, img, None, found))
    return records


def _folder(root: Path) -> list[FaceRecord]:
    return [FaceRecord(p.stem, p) for p in _images_in(root)]


# ---------------------------------------------------------------- loading

def check_files(records: list[FaceRecord]) -> None:
    """Every image and mask file of the records, decoded whole (InputError naming the first
    unusable one: truncated, a label outside the 19 classes, ...), so that a bad file stops a run
    before its first epoch, not inside it: a run's faces are recorded, so a file found damaged
    later can only be mended, not removed, without losing the run (1.5 s for celebamask_mini's
    800 faces of 512 px and their masks)."""
    for record in records:
        key = _fingerprint(record)
        if key in _CHECKED:  # decoded whole before in this process (another run, a test), unchanged since
            continue
        check_square(record.image, *check_image_file(record.image, decode=True))
        load_classes(record)  # its label values and sizes checked too
        if key is not None:
            _CHECKED.add(key)


_CHECKED: set[tuple] = set()  # check_files' records, by _fingerprint


def _file_key(path: str | Path) -> tuple:
    """(path, size, modification time): what a file is known by in this process's caches."""
    st = Path(path).stat()
    return str(path), st.st_size, st.st_mtime_ns


def _fingerprint(record: FaceRecord) -> tuple | None:
    """:func:`_file_key` of each of the record's files; None where one cannot be looked at (the
    check itself names it)."""
    files = [record.image, *([record.mask] if record.mask is not None else []), *(png for _, png in record.parts)]
    try:
        return tuple(_file_key(p) for p in files)
    except OSError:
        return None


def check_square(path: Path, width: int, height: int) -> None:
    """A dataset face is a square aligned crop: stretching another to a square would distort it."""
    if width != height:
        raise InputError(f"{path}: {width}x{height}: a dataset face is a square aligned crop")


def check_masks(sizes: list[tuple[Path, int, int]]) -> None:
    """A face's masks as (path, width, height): each square like the face (a square of another size,
    e.g. the release's 512x512 masks of its 1024x1024 faces, is resized to it; any other shape would
    be stretched over it), and all of one size (part masks are painted into one label map)."""
    for path, width, height in sizes:
        if width != height:
            raise InputError(f"{path}: {width}x{height}: a face's mask must be square like the face, "
                             "not stretched over it")
        if (width, height) != sizes[0][1:]:
            raise InputError(f"{path}: {width}x{height}, unlike {sizes[0][0].name} ({sizes[0][1]}x{sizes[0][2]}): "
                             "a face's part masks must all be one size")


def load_face(record: FaceRecord, size: int = SOURCE_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 at size x size and its 19-class label map (None without a mask)."""
    image = read_image(record.image)
    check_square(record.image, image.shape[1], image.shape[0])
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    classes = load_classes(record)
    return image, None if classes is None else resize_labels(classes, (size, size))


def load_classes(record: FaceRecord) -> np.ndarray | None:
    if record.mask is not None:
        classes = read_labels(record.mask)
        if classes.max() >= len(labels.CLASSES):
            raise InputError(f"{record.mask}: class index {classes.max()} outside 0..18")
        check_masks([(record.mask, classes.shape[1], classes.shape[0])])
        return classes
    if not record.parts:
        return None
    # binary part masks, stored as gray or RGB PNGs
    parts = [(class_id, png, read_image(png)[..., 0] > 127) for class_id, png in record.parts]
    check_masks([(png, part.shape[1], part.shape[0]) for _, png, part in parts])
    classes = np.zeros(parts[0][2].shape, np.uint8)
    for class_id, _, part in parts:
        classes[part] = class_id
    return classes


# ---------------------------------------------------------------- splits

def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def split_of(face_id: str, test_fraction: float = 0.2) -> str:
    """'test' for a stable ~test_fraction of ids (by hash), else 'trainval'."""
    return "test" if _unit_hash(f"smfd-test:{face_id}") < test_fraction else "trainval"


def fold_of(face_id: str, k: int = 5) -> int:
    return int(_unit_hash(f"smfd-fold:{face_id}") * k)


# The random streams of a training epoch, one tag each: numpy pads a short key with zeros, so two
# streams keyed [seed, epoch, 11] and [seed, epoch, 11, 0] would be one and the same.
STREAMS = {"sample": 0, "order": 1, "masks": 2}


def epoch_rng(seed: int, epoch: int, stream: str, index: int = 0) -> np.random.Generator:
    """The generator of one training stream: each sample's draws (``index``: its place in the
    epoch), the epoch's order of faces, or a process's choice of generated masks (``index``: its rank)."""
    return np.random.default_rng([seed, epoch, STREAMS[stream], index])


def eval_rng(seed: int, face_id: str) -> np.random.Generator:
    """The generator of a face's evaluation degradation: it depends on (seed, face id) only."""
    return np.random.default_rng([seed, int(_unit_hash(f"smfd-eval:{face_id}") * 2**62)])


def select(records: list[FaceRecord], part: str, k: int = 5, fold: int = 0,
           test_fraction: float = 0.2) -> list[FaceRecord]:
    """Pick 'train', 'val', 'trainval' or 'test' records; val is fold `fold` of k over trainval."""
    if part not in ("train", "val", "trainval", "test"):
        raise ValueError(f"unknown split part {part!r}")
    if part == "test":
        return [r for r in records if split_of(r.id, test_fraction) == "test"]
    pool = [r for r in records if split_of(r.id, test_fraction) == "trainval"]
    if part == "trainval":
        return pool
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} outside 0..{k - 1}")
    in_val = [fold_of(r.id, k) == fold for r in pool]
    return [r for r, v in zip(pool, in_val) if v == (part == "val")]


# A photo under two datasets' ids (the shared FFHQ sample holds re-encoded CelebA-HQ faces, one of
# them mirrored): 16x16 grey thumbnails of such copies correlate at 0.998 and more there, two
# different faces at 0.96 at most, also when one of them is mirrored.
COPY_CORRELATION = 0.99


def thumbnails(records: list[FaceRecord]) -> np.ndarray:
    """Each face's 16x16 grey thumbnail, zero-mean and of unit length (N x 256): a fingerprint that
    re-encoding and resizing leave as it is. JPEGs are decoded at 1/8 scale, so that tens of
    thousands take seconds, not minutes."""
    prints = np.empty((len(records), 256), np.float32)
    for i, record in enumerate(records):
        key = _file_key(record.image)  # a run's faces are looked at up to 3 times
        if key not in _THUMBNAILS:
            grey = cv2.imdecode(np.fromfile(record.image, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
            if grey is None or min(grey.shape) < 16:  # a format OpenCV does not decode, or a small image
                grey = cv2.cvtColor(read_image(record.image), cv2.COLOR_RGB2GRAY)  # (names a bad file)
            _THUMBNAILS[key] = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).ravel()
        prints[i] = _THUMBNAILS[key]
    prints -= prints.mean(axis=1, keepdims=True)
    prints /= np.maximum(np.linalg.norm(prints, axis=1, keepdims=True), 1e-6)  # a flat image stays 0
    return prints


_THUMBNAILS: dict[tuple, np.ndarray] = {}  # by _file_key: 256 bytes a face


def copies_of(records: list[FaceRecord], held_out: list[FaceRecord]) -> dict[str, str]:
    """{id of a face in ``records``: id of the held-out face it is a copy of, or a mirror image of
    (augmentation flips half the training samples, so a mirrored copy is trained on as the face)}."""
    if not records or not held_out:
        return {}
    theirs = thumbnails(held_out)
    theirs = np.concatenate([theirs, theirs.reshape(-1, 16, 16)[:, :, ::-1].reshape(len(theirs), 256)])
    found = {}
    for start in range(0, len(records), 4096):  # a block of similarities at a time: bounded memory
        block = records[start:start + 4096]
        similarity = thumbnails(block) @ theirs.T
        for i in np.flatnonzero(similarity.max(axis=1) >= COPY_CORRELATION):
            found[block[i].id] = held_out[int(similarity[i].argmax()) % len(held_out)].id
    return found


def named_copies(copies: dict[str, str]) -> str:
    """What :func:`copies_of` found, as a line names it: "copy (= original), ..."."""
    return ", ".join(f"{copy} (= {original})" for copy, original in sorted(copies.items()))


# ---------------------------------------------------------------- augmentation and samples

@dataclass(frozen=True)
class Augment:
    """The thesis' on-the-fly augmentation (3.4.6.1); geometry is shared by image and mask."""

    rotation: float = 30.0
    hflip: bool = True
    crop: tuple[float, float] = (0.8, 1.0)
    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.7, 1.3)


_LR_SWAP = np.arange(len(labels.CLASSES), dtype=np.uint8)
for _l, _r in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
    _i, _j = labels.CLASSES.index(_l), labels.CLASSES.index(_r)
    _LR_SWAP[_i], _LR_SWAP[_j] = _j, _i


def augment(image: np.ndarray, classes: np.ndarray | None, rng: np.random.Generator,
            aug: Augment = Augment()) -> tuple[np.ndarray, np.ndarray | None]:
    """Random rotation, flip and crop (one affine warp) and brightness/contrast on the sharp face."""
    h, w = image.shape[:2]
    angle = rng.uniform(-aug.rotation, aug.rotation)
    frac = rng.uniform(*aug.crop)
    flip = aug.hflip and rng.random() < 0.5
    # Crop window of side frac*w at a random position, then rotate about its centre.
    cx = rng.uniform(frac * w / 2, w - frac * w / 2)
    cy = rng.uniform(frac * h / 2, h - frac * h / 2)
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0 / frac)
    m[:, 2] += (w / 2 - cx, h / 2 - cy)
    if flip:
        m = np.array([[-1, 0, w - 1], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
    image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if classes is not None:
        classes = cv2.warpAffine(classes, m, (w, h), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_REFLECT_101)
        if flip:
            classes = _LR_SWAP[classes]
    x = image.astype(np.float32)
    mean = x.mean()
    x = ((x - mean) * rng.uniform(*aug.contrast) + mean) * rng.uniform(*aug.brightness)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), classes


def make_pair(image: np.ndarray, rng: np.random.Generator,
              options: degrade.PipelineOptions = degrade.PipelineOptions(),
              size: int = WORK_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, degrade.Recipe]:
    """A recipe drawn from ``rng`` and :func:`degrade_pair`'s (blurry, blurry before JPEG, sharp)
    at ``size``, then the recipe: how benchmark pairs and training samples are made alike."""
    recipe = degrade.sample_recipe(rng, options)
    return *degrade_pair(image, recipe, options.jpeg_at, size), recipe


def degrade_pair(image: np.ndarray, recipe: degrade.Recipe, jpeg_at: str = "source",
                 size: int = WORK_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blurry, blurry before JPEG, sharp) at ``size``: the recipe applied at the source resolution,
    its JPEG stage on the degraded source or on the resized face (``jpeg_at``, see
    degrade.PipelineOptions). The face before JPEG is what a distillation teacher reads."""
    quality = recipe.jpeg_quality
    uncompressed = degrade.apply(image, replace(recipe, jpeg_quality=None))
    blurry = degrade.jpeg_roundtrip(uncompressed, quality) if quality is not None and jpeg_at == "source" else uncompressed
    if image.shape[:2] != (size, size):
        same = blurry is uncompressed  # no JPEG at the source: one resize serves both
        uncompressed, image = (cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in (uncompressed, image))
        blurry = uncompressed if same else cv2.resize(blurry, (size, size), interpolation=cv2.INTER_AREA)
    if quality is not None and jpeg_at == "crop":
        blurry = degrade.jpeg_roundtrip(uncompressed, quality)
    return blurry, uncompressed, image


def benchmark_pair(record: FaceRecord, seed: int = 0, size: int = WORK_SIZE,
                   options: degrade.PipelineOptions = degrade.PipelineOptions()):
    """One evaluation pair under the benchmark protocol (SPEC section 2): the pipeline on the 512
    source with a recipe drawn from (seed, face id), both resized to ``size`` with INTER_AREA.

    Returns (blurry, sharp, groups or None, recipe); groups is the 5-group map at ``size``.
    """
    image, classes = load_face(record)
    blurry, _, sharp, recipe = make_pair(image, eval_rng(seed, record.id), options, size)
    groups = None if classes is None else labels.to_groups(resize_labels(classes, (size, size)))
    return blurry, sharp, groups, recipe


class FaceDataset:
    """A map-style dataset of on-the-fly (blurry, sharp, mask) samples for torch's DataLoader.

    Each item is a dict of float32 CHW arrays ``blurry``, ``sharp`` in [0, 1] and ``mask`` (int64
    HxW of group ids, or of class ids when ``classes=19``; -1 everywhere for a face without a mask).
    With ``fixed=True`` (and typically ``augment=None``) the samples form a fixed evaluation set
    whose degradations depend only on (seed, face id). In training, an index may exceed the number of
    faces (a sampler's second pass): the face is ``index % n`` and the random stream is keyed by
    (seed, epoch, index), so every draw is new yet reproducible.
    """

    def __init__(self, records: list[FaceRecord], size: int = WORK_SIZE, patch: int | None = None,
                 options: degrade.PipelineOptions = degrade.PipelineOptions(),
                 augment: Augment | None = Augment(), seed: int = 0, classes: int = 5,
                 fixed: bool = False, full_face: bool = False, uncompressed: bool = False):
        if not records:
            raise ValueError("a dataset needs at least one face")
        if patch is not None and patch > size:
            raise ValueError(f"patch {patch} larger than the working size {size}")
        self.records, self.size, self.patch = records, size, patch
        self.options, self.augment, self.seed, self.classes = options, augment, seed, classes
        self.fixed, self.epoch = fixed, 0
        # full_face: also return the whole blurry face and the patch's (y, x), so that a mask
        # generator can see the face as it will at inference, not just the patch.
        self.full_face = full_face
        # uncompressed: also return the blurry patch before the JPEG stage (a teacher's input).
        self.uncompressed = uncompressed

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng_for(self, index: int) -> np.random.Generator:
        if self.fixed:  # evaluation: the same degradation per face, whatever the epoch
            return eval_rng(self.seed, self.records[index % len(self.records)].id)
        return epoch_rng(self.seed, self.epoch, "sample", index)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index % len(self.records)]
        rng = self.rng_for(index)
        image, classes = load_face(record)
        if self.augment is not None:
            image, classes = augment(image, classes, rng, self.augment)
        blurry, uncompressed, sharp, _ = make_pair(image, rng, self.options, self.size)
        if classes is None:
            mask = np.full((self.size, self.size), -1, np.int64)
        else:
            classes = resize_labels(classes, (self.size, self.size))
            mask = (classes if self.classes == 19 else labels.to_groups(classes)).astype(np.int64)
        item = {}
        if self.full_face:
            item["blurry_full"] = _chw(blurry)
        y = x = 0
        if self.patch is not None:
            y, x = rng.integers(0, self.size - self.patch + 1, size=2)
            window = np.s_[y:y + self.patch, x:x + self.patch]
            blurry, uncompressed, sharp, mask = blurry[window], uncompressed[window], sharp[window], mask[window]
        item.update(blurry=_chw(blurry), sharp=_chw(sharp), mask=np.ascontiguousarray(mask))
        if self.uncompressed:
            item["blurry_uncompressed"] = _chw(uncompressed)
        if self.full_face:
            item["origin"] = np.array([y, x], np.int64)
        return item


def _chw(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0
