"""CelebAMask-HQ's 19 classes, the thesis' 5 groups (SPEC section 1) and display colours."""

from __future__ import annotations

import numpy as np

# Official CelebAMask-HQ order (index = class id).
CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
GROUPS = ("background", "face skin", "facial parts", "hair", "accessories")

_GROUP_MEMBERS = {
    0: ("background", "neck", "cloth"),
    1: ("skin",),
    2: ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip"),
    3: ("hair",),
    4: ("eye_g", "hat", "ear_r", "neck_l"),
}
# CLASS_TO_GROUP[class_id] -> group id; a lookup table so conversion is one indexing op.
CLASS_TO_GROUP = np.zeros(len(CLASSES), np.uint8)
for _group, _members in _GROUP_MEMBERS.items():
    for _name in _members:
        CLASS_TO_GROUP[CLASSES.index(_name)] = _group

# Colours chosen to stay distinguishable for common colour-vision deficiencies (Okabe-Ito based).
GROUP_PALETTE = np.array([
    (0, 0, 0),        # background
    (230, 159, 0),    # face skin: orange
    (86, 180, 233),   # facial parts: sky blue
    (0, 158, 115),    # hair: bluish green
    (204, 121, 167),  # accessories: reddish purple
], np.uint8)

CLASS_PALETTE = np.array([
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
    (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
    (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
    (0, 204, 0),
], np.uint8)


def to_groups(classes: np.ndarray) -> np.ndarray:
    """Map a 19-class label map (values 0..18) to the 5 groups (values 0..4)."""
    classes = np.asarray(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= len(CLASSES)):
        raise ValueError(f"class labels must lie in 0..{len(CLASSES) - 1}, got {classes.min()}..{classes.max()}")
    return CLASS_TO_GROUP[classes]


def check_groups(labels: np.ndarray) -> np.ndarray:
    """Validate a 5-group label map and return it as uint8 HxW."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label map must be HxW, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(GROUPS)):
        raise ValueError(f"group labels must lie in 0..{len(GROUPS) - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray = GROUP_PALETTE) -> np.ndarray:
    """Label map -> RGB uint8 picture."""
    return palette[np.asarray(labels)]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45,
            palette: np.ndarray = GROUP_PALETTE) -> np.ndarray:
    """Blend the coloured label map over an RGB uint8 image; background stays untinted."""
    colour = colorize(labels, palette).astype(np.float32)
    mix = image.astype(np.float32) * (1 - alpha) + colour * alpha
    out = np.where((np.asarray(labels) > 0)[..., None], mix, image.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
