"""The weights shipped inside the package: present, compact, the default architectures, and better
than the blurry input on held-out faces (the full figures: scripts/benchmark_model.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors import safe_open

from smfd import checkpoint, data, metrics
from smfd.models import MaskNetConfig, SMFDConfig
from smfd.restorer import WEIGHTS_DIR, Restorer, weight_files


def test_shipped_files_are_fp16_with_a_model_card():
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    for path in weight_files():
        with safe_open(str(path), framework="pt") as f:
            dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
        assert "F32" not in dtypes and "F16" in dtypes, (path, dtypes)


def test_shipped_networks_have_the_default_architectures():
    mask_file, deblur_file = weight_files()
    mask_net, smfd_net = checkpoint.load(mask_file), checkpoint.load(deblur_file)
    # The thesis' layers and widths, but both decoders halved with 1x1 convolutions before
    # PixelShuffle (the speed issue's networks: SMFD-UNet's in version 1.2, the mask generator's in
    # 1.3); the switches that add no parameters (residual output, input mean, soft masks, generated
    # facial parts left out in version 1.4) are the model card's to state.
    light = {"decoder": (128, 64, 32), "shuffle_kernel": 1}
    switches = {"residual": True, "match_input_mean": True, "soft_mask": True, "generated_parts": False, **light}
    assert mask_net.config == dataclasses.replace(MaskNetConfig(), **light), mask_net.config
    assert smfd_net.config == dataclasses.replace(SMFDConfig(), **switches), smfd_net.config


@pytest.fixture(scope="module")
def held_out(celeba):
    records = [r for r in data.select(data.open_dataset(celeba), "test") if r.has_mask]
    return [data.benchmark_pair(r, seed=0) for r in records[:6]]


def test_shipped_model_beats_the_blurry_input_on_held_out_faces(held_out):
    restorer = Restorer.from_pretrained(device="cpu")
    blurry_psnr, restored_psnr, shifts, seg = [], [], [], metrics.SegmentationScore(5)
    for blurry, sharp, groups, _ in held_out:
        result = restorer.restore_face(blurry)  # the path every caller takes
        seg.add(result.groups, groups)
        out = result.image
        blurry_psnr.append(metrics.psnr(blurry, sharp))
        restored_psnr.append(metrics.psnr(out, sharp))
        shifts.append(metrics.mean_colour_shift(out, sharp))
    # Six faces are a small sample; the margins are well inside what the full benchmark measures.
    assert np.mean(restored_psnr) > np.mean(blurry_psnr) + 0.8
    assert np.mean(shifts) < 3.0
    assert seg.mean_dice() > 0.6


@pytest.fixture(scope="module")
def identity_faces(celeba):
    records = [r for r in data.select(data.open_dataset(celeba), "test") if r.has_mask]
    return [data.benchmark_pair(r, seed=0)[:2] for r in records[:IDENTITY_FACES]]


IDENTITY_FACES = 16


def test_shipped_model_keeps_identity_at_least_as_well_as_the_blurry_input(identity_faces):
    """dlib's descriptor distance to the sharp face (box found once on it), generated masks: the
    restored faces are on average no further from the person than the blurry ones, and no fewer
    of them pass dlib's same-person threshold (the full figures: scripts/benchmark_model.py)."""
    from smfd.identity import SAME_PERSON, geometry

    restorer = Restorer.from_pretrained(device="cpu")
    blurry_d, restored_d = [], []
    for blurry, sharp in identity_faces:
        b, r = geometry().distances([blurry, restorer.restore(blurry)], sharp)
        blurry_d.append(b)
        restored_d.append(r)
    blurry_d, restored_d = np.array(blurry_d), np.array(restored_d)
    assert restored_d.mean() <= blurry_d.mean(), (restored_d.mean(), blurry_d.mean())
    assert (restored_d < SAME_PERSON).sum() >= (blurry_d < SAME_PERSON).sum()
