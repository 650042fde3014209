"""CelebAMask-HQ classes, the 5 groups of SPEC section 1, palettes and overlays, on real masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from smfd import labels

# ../shared/data/README.md: the official CelebAMask-HQ order (g_mask.py).
OFFICIAL = ("background skin nose eye_g l_eye r_eye l_brow r_brow l_ear r_ear mouth u_lip l_lip hair hat "
            "ear_r neck_l neck cloth").split()
# SPEC section 1, table "Masks (3.4.2)".
SPEC_GROUPS = {
    "background": 0, "neck": 0, "cloth": 0,
    "skin": 1,
    "nose": 2, "l_eye": 2, "r_eye": 2, "l_brow": 2, "r_brow": 2, "l_ear": 2, "r_ear": 2, "mouth": 2,
    "u_lip": 2, "l_lip": 2,
    "hair": 3,
    "eye_g": 4, "hat": 4, "ear_r": 4, "neck_l": 4,
}


@pytest.fixture(scope="module")
def real_masks(celeba) -> list[np.ndarray]:
    paths = sorted((celeba / "masks").glob("*.png"))[:6]
    return [np.array(Image.open(p)) for p in paths]


def test_classes_and_groups_follow_the_spec():
    assert labels.CLASSES == tuple(OFFICIAL)
    assert labels.GROUPS == ("background", "face skin", "facial parts", "hair", "accessories")
    assert set(SPEC_GROUPS) == set(OFFICIAL)
    for class_id, name in enumerate(OFFICIAL):
        assert labels.CLASS_TO_GROUP[class_id] == SPEC_GROUPS[name], name
    assert labels.to_groups(np.arange(19)).tolist() == [SPEC_GROUPS[n] for n in OFFICIAL]


def test_real_masks_map_pixel_by_pixel(real_masks):
    for classes in real_masks:
        assert classes.dtype == np.uint8 and classes.shape == (512, 512) and classes.max() <= 18
        groups = labels.to_groups(classes)
        assert groups.shape == classes.shape and groups.dtype == np.uint8
        for class_id in np.unique(classes):
            assert np.all(groups[classes == class_id] == SPEC_GROUPS[OFFICIAL[class_id]])
        assert np.array_equal(labels.check_groups(groups), groups)
    # The sample has faces with skin, facial parts and hair at least.
    present = set(np.unique(np.concatenate([labels.to_groups(m).ravel() for m in real_masks])))
    assert {0, 1, 2, 3} <= present


def test_out_of_range_labels_are_refused():
    with pytest.raises(ValueError, match="0..18"):
        labels.to_groups(np.array([[0, 19]]))
    with pytest.raises(ValueError, match="0..18"):
        labels.to_groups(np.array([[-1, 0]]))
    with pytest.raises(ValueError, match="0..4"):
        labels.check_groups(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="HxW"):
        labels.check_groups(np.zeros((4, 4, 1), np.uint8))
    assert labels.check_groups(np.array([[0, 4]], np.int64)).dtype == np.uint8


def test_16_bit_label_pngs_are_read_exactly_or_refused(tmp_path):
    """A 16-bit PNG holding 257 must not come back as 1 (a plausible group) by wrap-around."""
    from smfd.errors import InputError
    from smfd.images import read_groups, read_labels

    Image.fromarray(np.array([[0, 4], [2, 3]], np.uint16)).save(tmp_path / "ok.png")
    assert read_groups(tmp_path / "ok.png").tolist() == [[0, 4], [2, 3]]
    Image.fromarray(np.array([[0, 257]], np.uint16)).save(tmp_path / "wrapped.png")
    with pytest.raises(InputError, match="wrapped.png: label values must lie in 0..255, found 0..257"):
        read_labels(tmp_path / "wrapped.png")


def test_palettes_are_distinct_rgb_colours():
    for palette, n in ((labels.GROUP_PALETTE, 5), (labels.CLASS_PALETTE, 19)):
        assert palette.shape == (n, 3) and palette.dtype == np.uint8
        assert len({tuple(c) for c in palette}) == n
        assert tuple(palette[0]) == (0, 0, 0)  # background is black in both


def test_colorize_and_overlay(real_masks, celeba):
    from smfd.images import read_image

    image = read_image(sorted((celeba / "images").glob("*.jpg"))[0])
    groups = labels.to_groups(real_masks[0])
    colour = labels.colorize(groups)
    assert colour.shape == (512, 512, 3) and np.array_equal(colour[groups == 3][0], labels.GROUP_PALETTE[3])
    assert np.array_equal(labels.colorize(real_masks[0], labels.CLASS_PALETTE)[real_masks[0] == 1][0],
                          labels.CLASS_PALETTE[1])
    out = labels.overlay(image, groups, alpha=0.45)
    assert out.shape == image.shape and out.dtype == np.uint8
    fg = groups > 0
    assert np.array_equal(out[~fg], image[~fg])  # background untinted
    expected = np.rint(image[fg] * 0.55 + colour[fg] * 0.45)
    assert np.abs(out[fg].astype(float) - expected).max() <= 1
    assert np.array_equal(labels.overlay(image, groups, alpha=0.0), image)
    assert np.array_equal(labels.overlay(image, groups, alpha=1.0)[fg], colour[fg])
