"""Dataset layouts, splits, augmentation and training samples on the real faces in ../shared/data."""

from __future__ import annotations

import random
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from smfd import data, degrade, labels
from smfd.errors import InputError
from smfd.metrics import psnr


@pytest.fixture(scope="module")
def merged(celeba) -> list[data.FaceRecord]:
    return data.open_dataset(celeba)


@pytest.fixture(scope="module")
def face_and_classes(merged) -> tuple[np.ndarray, np.ndarray]:
    return data.load_face(merged[0])


# ---------------------------------------------------------------- layouts

def test_merged_layout_reads_images_and_palette_masks(celeba, merged):
    assert data.detect_layout(celeba) == "merged"
    assert len(merged) == 800 and [r.id for r in merged] == sorted(r.id for r in merged)
    assert all(r.has_mask and r.image.stem == r.mask.stem == r.id for r in merged)
    for record in merged[:3]:
        image, classes = data.load_face(record)
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8
        assert classes.shape == (512, 512) and classes.dtype == np.uint8
        np.testing.assert_array_equal(classes, np.array(Image.open(record.mask)))  # palette indices
        assert classes.max() <= 18 and 1 in classes
    small, small_classes = data.load_face(merged[0], size=128)
    assert small.shape == (128, 128, 3) and small_classes.shape == (128, 128)


OFFICIAL_IDS = (0, 1, 2000, 4001)  # mask folders 0, 0, 1 and 2


@pytest.fixture(scope="module")
def official(tmp_path_factory, merged):
    """A small CelebAMask-HQ release built from real faces: 1024x1024 JPEGs, one binary 512x512 PNG
    per part under CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png."""
    root = tmp_path_factory.mktemp("celebamask_hq")
    images, anno = root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask-anno"
    images.mkdir()
    anno.mkdir()
    truth = {}
    for n, (face_id, record) in enumerate(zip(OFFICIAL_IDS, merged)):
        image, classes = data.load_face(record)
        big = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
        Image.fromarray(big).save(images / f"{face_id}.jpg", quality=95)
        folder = anno / str(face_id // 2000)
        folder.mkdir(exist_ok=True)
        for class_id in np.unique(classes)[1:]:  # background has no file
            part = Image.fromarray(np.where(classes == class_id, 255, 0).astype(np.uint8))
            if n % 2:  # the release mixes grayscale and RGB part files; read both
                part = part.convert("RGB")
            part.save(folder / f"{face_id:05d}_{labels.CLASSES[class_id]}.png")
        truth[str(face_id)] = (image, classes)
    # A face without annotations, and files the reader must ignore.
    Image.fromarray(big).save(images / "7.jpg", quality=95)
    (anno / "0" / "00000_not_a_part.png").write_bytes((anno / "0" / "00000_skin.png").read_bytes())
    (anno / "0" / "notes.txt").write_text("not a mask")
    (anno / "readme.txt").write_text("not a folder")
    return root, truth


def test_official_layout_rebuilds_the_label_maps(official):
    root, truth = official
    assert data.detect_layout(root) == "official"
    records = data.open_dataset(root)
    assert [r.id for r in records] == sorted(["0", "1", "2000", "4001", "7"])
    by_id = {r.id: r for r in records}
    for face_id, (image, classes) in truth.items():
        record = by_id[face_id]
        assert record.has_mask and record.mask is None
        assert all(p.parent.name == str(int(face_id) // 2000) for _, p in record.parts)
        loaded, loaded_classes = data.load_face(record)
        assert loaded.shape == (512, 512, 3)
        assert psnr(loaded, image) > 35  # 1024x1024 JPEG back to 512 (INTER_AREA)
        np.testing.assert_array_equal(loaded_classes, classes)
    assert not by_id["7"].has_mask and data.load_face(by_id["7"])[1] is None


def test_folder_layout_has_no_masks(shared_data):
    ffhq = shared_data / "ffhq_mini"
    assert data.detect_layout(ffhq) == "folder"
    records = data.open_dataset(ffhq)
    assert len(records) == 400 and not any(r.has_mask for r in records)
    image, classes = data.load_face(records[0])
    assert image.shape == (512, 512, 3) and classes is None
    sample = data.FaceDataset(records[:2], size=64, seed=1)[0]
    assert sample["blurry"].shape == (3, 64, 64) and np.all(sample["mask"] == -1)


def _named_before_training_and_when_read(records: list[data.FaceRecord], says: str) -> None:
    """check_files names the file from its header before a training starts; load_face from its pixels."""
    for check in (data.check_files, lambda records: data.load_face(records[0])):
        with pytest.raises(InputError, match="^" + re.escape(says)):
            check(records)


def test_a_face_that_is_not_square_is_named_not_stretched(tmp_path, shared_data):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    Image.open(sorted((shared_data / "ffhq_mini").glob("*.*"))[0]).crop((0, 0, 512, 400)).save(folder / "wide.png")
    records = data.open_dataset(folder)
    _named_before_training_and_when_read(records, f"{folder / 'wide.png'}: 512x400: a dataset face is a square "
                                                  "aligned crop")


@pytest.mark.parametrize("size,says", [((256, 256), "256x256, unlike 00000_skin.png (512x512): a face's part "
                                                     "masks must all be one size"),
                                       ((512, 300), "512x300: a face's mask must be square like the face")])
def test_part_masks_of_another_size_or_shape_are_named_before_the_first_epoch(official, tmp_path, size, says):
    """Painted into one label map, a part of another size would fail mid-epoch (IndexError)."""
    import shutil

    root = tmp_path / "release"
    shutil.copytree(official[0], root)
    victim = root / "CelebAMask-HQ-mask-anno" / "0" / "00000_nose.png"
    Image.open(victim).resize(size).save(victim)
    _named_before_training_and_when_read([r for r in data.open_dataset(root) if r.id == "0"], f"{victim}: {says}")


def test_a_mask_that_is_not_square_like_its_face_is_named_not_stretched(celeba, tmp_path):
    folder = tmp_path / "merged"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image = sorted((celeba / "images").iterdir())[0]
    (folder / "images" / image.name).symlink_to(image)
    Image.open(celeba / "masks" / f"{image.stem}.png").resize((512, 300), Image.NEAREST).save(
        folder / "masks" / f"{image.stem}.png")
    _named_before_training_and_when_read(data.open_dataset(folder), f"{folder / 'masks' / image.stem}.png: 512x300: "
                                                                    "a face's mask must be square like the face")


def test_layout_detection_and_errors(tmp_path, celeba):
    with pytest.raises(InputError, match="missing: dataset folder not found$"):
        data.detect_layout(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(InputError, match="notes.txt: not a folder: a dataset is a folder$"):  # not "not found"
        data.open_dataset(tmp_path / "notes.txt")
    (tmp_path / "notes.txt").unlink()
    assert data.detect_layout(tmp_path) == "folder"
    with pytest.raises(InputError, match="no faces found"):
        data.open_dataset(tmp_path)
    with pytest.raises(InputError, match="unknown dataset layout"):
        data.open_dataset(celeba, layout="zip")
    assert len(data.open_dataset(celeba / "images", layout="folder")) == 800
    (tmp_path / "images").mkdir()  # the merged layout before its masks are made: faces, not "no faces found"
    (tmp_path / "images" / "a.jpg").symlink_to(next((celeba / "images").iterdir()))
    assert [(r.id, r.mask) for r in data.open_dataset(tmp_path)] == [("a", None)]


# ---------------------------------------------------------------- splits

def test_splits_are_deterministic_disjoint_and_about_a_fifth_test(merged):
    test = data.select(merged, "test")
    trainval = data.select(merged, "trainval")
    shuffled = list(merged)
    random.Random(0).shuffle(shuffled)
    assert {r.id for r in data.select(shuffled, "test")} == {r.id for r in test}  # by id, not position
    assert {r.id for r in data.select(merged[:100], "test")} == {r.id for r in test if r in merged[:100]}
    assert not {r.id for r in test} & {r.id for r in trainval}
    assert len(test) + len(trainval) == len(merged)
    assert 0.15 < len(test) / len(merged) < 0.25
    assert 0.45 < len(data.select(merged, "test", test_fraction=0.5)) / len(merged) < 0.55


def test_k_folds_partition_trainval(merged):
    trainval = {r.id for r in data.select(merged, "trainval")}
    vals = [{r.id for r in data.select(merged, "val", k=5, fold=f)} for f in range(5)]
    assert set().union(*vals) == trainval and sum(map(len, vals)) == len(trainval)
    assert all(len(v) > 0.1 * len(trainval) for v in vals)
    for f in range(5):
        train = {r.id for r in data.select(merged, "train", k=5, fold=f)}
        assert train == trainval - vals[f]
    with pytest.raises(ValueError, match="fold"):
        data.select(merged, "val", k=5, fold=5)
    with pytest.raises(ValueError, match="part"):
        data.select(merged, "holdout")


# ---------------------------------------------------------------- augmentation

NO_COLOUR = dict(brightness=(1.0, 1.0), contrast=(1.0, 1.0))


def test_augment_moves_image_and_mask_together(face_and_classes):
    _, classes = face_and_classes
    painted = labels.CLASS_PALETTE[classes]  # the image's colours encode the labels

    def fits(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.all(image == labels.CLASS_PALETTE[mask], axis=-1)

    aug = data.Augment(hflip=False, **NO_COLOUR)
    for seed in range(3):
        image, mask = data.augment(painted, classes, np.random.default_rng(seed), aug)
        assert image.shape == painted.shape and mask.shape == classes.shape and mask.dtype == np.uint8
        assert not np.array_equal(mask, classes)  # the geometry did change
        # Away from label edges (where bilinear interpolation blends colours) they agree exactly.
        uniform = cv2.erode(mask, np.ones((3, 3))) == cv2.dilate(mask, np.ones((3, 3)))
        assert fits(image, mask)[uniform].mean() > 0.999 and fits(image, mask).mean() > 0.97
        # A mask warped with another draw's geometry does not fit.
        _, other = data.augment(painted, classes, np.random.default_rng(seed + 10), aug)
        assert fits(image, other).mean() < 0.9


def test_horizontal_flip_mirrors_both_and_swaps_left_and_right(face_and_classes):
    image, classes = face_and_classes
    aug = data.Augment(rotation=0.0, crop=(1.0, 1.0), **NO_COLOUR)
    flips = 0
    for seed in range(8):
        out, mask = data.augment(image, classes, np.random.default_rng(seed), aug)
        if np.array_equal(out, image):
            np.testing.assert_array_equal(mask, classes)
            continue
        flips += 1
        np.testing.assert_array_equal(out, image[:, ::-1])
        mirrored = mask[:, ::-1]
        for left, right in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
            li, ri = labels.CLASSES.index(left), labels.CLASSES.index(right)
            assert np.all(mirrored[classes == li] == ri) and np.all(mirrored[classes == ri] == li)
        same = ~np.isin(classes, [4, 5, 6, 7, 8, 9])
        np.testing.assert_array_equal(mirrored[same], classes[same])
    assert 0 < flips < 8


def test_brightness_and_contrast_change_the_image_only(face_and_classes):
    image, classes = face_and_classes
    aug = data.Augment(rotation=0.0, hflip=False, crop=(1.0, 1.0), brightness=(1.2, 1.2), contrast=(1.0, 1.0))
    out, mask = data.augment(image, classes, np.random.default_rng(0), aug)
    np.testing.assert_array_equal(mask, classes)
    expected = np.clip(np.rint(image.astype(np.float32) * 1.2), 0, 255)
    assert np.abs(out - expected).max() <= 1
    out, _ = data.augment(image, None, np.random.default_rng(0), data.Augment(rotation=0.0, hflip=False,
                          crop=(1.0, 1.0), brightness=(1.0, 1.0), contrast=(0.7, 0.7)))
    assert out.astype(float).std() == pytest.approx(0.7 * image.astype(float).std(), rel=0.02)


def test_each_stream_of_a_training_epoch_is_its_own():
    """Every sample's draws, the epoch's order of faces and each process's choice of generated
    masks come from different generators (numpy pads a short key with zeros: keyed [seed, epoch,
    11, 0], a stream was sample 11's)."""
    streams = [("sample", i) for i in range(64)] + [("order", 0)] + [("masks", rank) for rank in range(4)]
    firsts = {data.epoch_rng(1, 3, stream, index).random() for stream, index in streams}
    assert len(firsts) == len(streams)
    assert data.epoch_rng(1, 3, "sample", 5).random() != data.epoch_rng(1, 4, "sample", 5).random()


def test_make_pair_degrades_at_the_source_size_then_resizes(face_and_classes):
    image, _ = face_and_classes
    blurry, _, sharp, recipe = data.make_pair(image, np.random.default_rng(3))
    assert blurry.shape == sharp.shape == (256, 256, 3)
    np.testing.assert_array_equal(sharp, cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA))
    source = degrade.apply(image, recipe)
    np.testing.assert_array_equal(blurry, cv2.resize(source, (256, 256), interpolation=cv2.INTER_AREA))


def test_jpeg_compresses_the_source_or_the_crop_after_the_same_draws(face_and_classes):
    """jpeg_at: the same recipe's quality applied to the degraded 512 source before the resize
    (as degrade.apply does) or to the 256 face after it; the face before JPEG is the thesis pair's."""
    image, _ = face_and_classes
    thesis, _, thesis_sharp, _ = data.make_pair(image, np.random.default_rng(3))
    at = {}
    for where in degrade.JPEG_AT:
        options = degrade.PipelineOptions(jpeg=True, jpeg_range=(25, 25), jpeg_at=where)
        at[where] = data.make_pair(image, np.random.default_rng(3), options)
        assert at[where][3].jpeg_quality == 25
        blurry, uncompressed, sharp = data.degrade_pair(image, at[where][3], where)
        np.testing.assert_array_equal(blurry, at[where][0])
        np.testing.assert_array_equal(uncompressed, thesis)
        np.testing.assert_array_equal(at[where][1], thesis)
        np.testing.assert_array_equal(sharp, thesis_sharp)
    source = degrade.apply(image, at["source"][3])
    np.testing.assert_array_equal(at["source"][0], cv2.resize(source, (256, 256), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(at["crop"][0], degrade.jpeg_roundtrip(thesis, 25))
    assert not np.array_equal(at["source"][0], at["crop"][0])


def test_samples_can_carry_the_blurry_patch_before_jpeg(merged):
    """uncompressed=True: each sample also holds its blurry patch before the JPEG stage (what a
    distillation teacher reads); the rest of the sample is what it would be without it."""
    options = degrade.PipelineOptions(jpeg=True, jpeg_range=(20, 20), jpeg_at="crop")
    plain = data.FaceDataset(merged[:2], patch=64, options=options, seed=4)
    both = data.FaceDataset(merged[:2], patch=64, options=options, seed=4, uncompressed=True)
    # whole faces: JPEG's own draws come after the recipe's, so the patch's origin is drawn later
    whole = data.FaceDataset(merged[:2], options=options, seed=4, uncompressed=True)
    thesis = data.FaceDataset(merged[:2], seed=4)
    for i in range(2):
        a, b = plain[i], both[i]
        assert "blurry_uncompressed" not in a and _same(a, b) and b["blurry_uncompressed"].shape == (3, 64, 64)
        w, t = whole[i], thesis[i]
        np.testing.assert_array_equal(w["blurry_uncompressed"], t["blurry"])
        assert np.abs(w["blurry"] - w["blurry_uncompressed"]).mean() > 1 / 255


# ---------------------------------------------------------------- training samples

def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("blurry", "sharp", "mask"))


def test_samples_have_the_documented_shapes_and_ranges(merged):
    ds = data.FaceDataset(merged[:3], seed=5)
    s = ds[1]
    assert s["blurry"].shape == s["sharp"].shape == (3, 256, 256)
    assert s["blurry"].dtype == s["sharp"].dtype == np.float32
    for key in ("blurry", "sharp"):
        assert 0.0 <= s[key].min() and s[key].max() <= 1.0 and s[key].std() > 0.05
    assert s["mask"].shape == (256, 256) and s["mask"].dtype == np.int64
    assert set(np.unique(s["mask"])) <= set(range(5)) and len(np.unique(s["mask"])) >= 3
    # The 19-class sample of the same (seed, epoch, index) groups to the 5-class one.
    s19 = data.FaceDataset(merged[:3], seed=5, classes=19)[1]
    assert s19["mask"].max() <= 18
    np.testing.assert_array_equal(labels.to_groups(s19["mask"]), s["mask"])
    patch = data.FaceDataset(merged[:3], patch=64, seed=5)[0]
    assert patch["blurry"].shape == (3, 64, 64) and patch["mask"].shape == (64, 64)
    with pytest.raises(ValueError, match="patch"):
        data.FaceDataset(merged[:3], size=128, patch=256)
    with pytest.raises(ValueError, match="at least one"):
        data.FaceDataset([])


def test_samples_are_reproducible_from_seed_epoch_and_index(merged):
    ds = data.FaceDataset(merged[:2], size=128, seed=3)
    first = ds[0]
    assert _same(first, data.FaceDataset(merged[:2], size=128, seed=3)[0])
    assert not _same(first, data.FaceDataset(merged[:2], size=128, seed=4)[0])
    ds.set_epoch(1)
    assert not _same(first, ds[0])
    ds.set_epoch(0)
    assert _same(first, ds[0])
    assert not _same(first, ds[2])  # a second pass over face 0 draws anew


def test_fixed_evaluation_set_is_stable_across_epochs(merged):
    ds = data.FaceDataset(merged[:2], size=128, augment=None, seed=0, fixed=True)
    before = [ds[i] for i in range(2)]
    ds.set_epoch(7)
    assert all(_same(b, ds[i]) for i, b in enumerate(before))
    assert not _same(before[0], before[1])
    # Without augmentation the target is the plain face at the working size.
    image, _ = data.load_face(merged[0])
    expected = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(before[0]["sharp"], expected, atol=1e-6)
