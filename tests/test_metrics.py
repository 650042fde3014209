"""Core metrics against scikit-image and direct numpy references, on real faces and masks."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from smfd import data, degrade, labels, metrics


@pytest.fixture(scope="module")
def faces(celeba) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three real faces at the benchmark size (256x256) with their 5-group masks."""
    out = []
    for record in data.open_dataset(celeba)[:3]:
        image, classes = data.load_face(record, size=256)
        out.append((image, labels.to_groups(classes)))
    return out


@pytest.fixture(scope="module")
def pairs(faces) -> list[tuple[np.ndarray, np.ndarray]]:
    """(sharp, distorted) pairs: the thesis pipeline, a JPEG round trip, another face."""
    sharp = [f[0] for f in faces]
    blurry = degrade.degrade(sharp[0], np.random.default_rng(0))[0]
    buf = io.BytesIO()
    Image.fromarray(sharp[1]).save(buf, format="JPEG", quality=30)
    jpeg = np.array(Image.open(buf))
    return [(sharp[0], blurry), (sharp[1], jpeg), (sharp[1], sharp[2])]


def test_psnr_mse_and_ssim_match_scikit_image(pairs):
    for a, b in pairs:
        assert metrics.mse(a, b) == pytest.approx(mean_squared_error(a, b), abs=1e-6)
        assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-6)
        reference = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255)
        assert metrics.ssim(a, b) == pytest.approx(reference, abs=1e-6)
        assert metrics.ssim(a, b) == pytest.approx(metrics.ssim(b, a), abs=1e-12)
    # The three pairs are genuinely different distortions.
    assert len({round(metrics.psnr(a, b), 1) for a, b in pairs}) == 3


def test_ssim_on_grayscale_matches_scikit_image(pairs):
    a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in pairs[0])
    reference = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=255)
    assert metrics.ssim(a, b) == pytest.approx(reference, abs=1e-6)


def test_identical_images(faces):
    image = faces[0][0]
    assert metrics.psnr(image, image.copy()) == math.inf
    assert metrics.mse(image, image) == 0.0
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_known_values():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + 10
    assert metrics.mse(a, b) == 100.0
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert metrics.mean_colour_shift(a, b) == pytest.approx(10.0)
    b[..., 0] = 130
    assert metrics.mean_colour_shift(a, b) == pytest.approx((30 + 10 + 10) / 3)


def test_local_colour_error_sees_regions_not_detail_or_the_mean():
    """A darker and a lighter half are a local colour error that the per-channel means cancel; a
    pixel-fine pattern of the same strength is detail, not colour, and barely counts."""
    a = np.full((256, 256, 3), 100, np.uint8)
    shaded = a.copy()
    shaded[:, :128] -= 20
    shaded[:, 128:] += 20
    assert metrics.mean_colour_shift(a, shaded) == pytest.approx(0.0)
    assert 15 < metrics.local_colour_error(a, shaded) <= 20
    tinted = a.copy()
    tinted[..., 0] += 20  # opposite casts per channel: a blur across channels would cancel them
    tinted[..., 1] -= 20
    assert metrics.local_colour_error(a, tinted) == pytest.approx(40 / 3)
    fine = a.copy()
    odd = np.indices((256, 256)).sum(0) % 2 == 1
    fine[odd] += 20
    fine[~odd] -= 20
    assert metrics.local_colour_error(a, fine) < 0.5
    assert metrics.local_colour_error(a, a) == 0.0


def test_mismatched_inputs_raise(faces):
    image = faces[0][0]
    for fn in (metrics.psnr, metrics.ssim, metrics.mse, metrics.local_colour_error):
        with pytest.raises(ValueError, match="shape"):
            fn(image, image[:128])
        with pytest.raises(ValueError, match="uint8"):
            fn(image, image.astype(np.float32))
    with pytest.raises(ValueError, match="window"):
        metrics.ssim(image[:8, :8], image[:8, :8])


def _direct(pred: np.ndarray, target: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    dice, jac = np.full(n, np.nan), np.full(n, np.nan)
    for c in range(n):
        p, t = pred == c, target == c
        if p.any() or t.any():
            inter = np.logical_and(p, t).sum()
            dice[c] = 2 * inter / (p.sum() + t.sum())
            jac[c] = inter / np.logical_or(p, t).sum()
    return dice, jac


def test_dice_and_jaccard_per_class_match_a_direct_computation(faces):
    target = faces[0][1]
    preds = [faces[1][1], np.roll(target, 9, axis=1), cv2.resize(cv2.resize(target, (32, 32),
             interpolation=cv2.INTER_NEAREST), (256, 256), interpolation=cv2.INTER_NEAREST)]
    for pred in preds:
        dice, jac = _direct(pred, target)
        np.testing.assert_allclose(metrics.dice(pred, target), dice, rtol=1e-12)
        np.testing.assert_allclose(metrics.jaccard(pred, target), jac, rtol=1e-12)
    np.testing.assert_array_equal(metrics.dice(target, target)[~np.isnan(dice)], 1.0)


def test_absent_classes_score_nan_and_are_left_out_of_the_mean():
    pred = np.array([[0, 1], [1, 1]])
    target = np.array([[0, 1], [0, 1]])
    dice = metrics.dice(pred, target)
    assert np.all(np.isnan(dice[2:]))
    np.testing.assert_allclose(dice[:2], [2 * 1 / 3, 2 * 2 / 5])
    np.testing.assert_allclose(metrics.jaccard(pred, target)[:2], [1 / 2, 2 / 3])
    score = metrics.SegmentationScore()
    score.add(pred, target)
    assert score.mean_dice() == pytest.approx((2 / 3 + 4 / 5) / 2)
    # A class only in the prediction counts as 0, not nan.
    assert metrics.dice(np.array([[4]]), np.array([[0]]))[4] == 0.0


def test_segmentation_score_sums_pixels_over_images(faces):
    targets = [f[1] for f in faces]
    preds = [np.roll(t, 5 * (i + 1), axis=0) for i, t in enumerate(targets)]
    score = metrics.SegmentationScore(5)
    for p, t in zip(preds, targets):
        score.add(p, t)
    dice, jac = _direct(np.concatenate(preds), np.concatenate(targets))
    np.testing.assert_allclose(score.dice(), dice, rtol=1e-12)
    np.testing.assert_allclose(score.jaccard(), jac, rtol=1e-12)
    assert score.mean_dice() == pytest.approx(np.nanmean(dice))
    assert score.mean_jaccard() == pytest.approx(np.nanmean(jac))
    assert score.counts.sum(0)[2] == sum(t.size for t in targets)


def test_label_errors_raise(faces):
    target = faces[0][1]
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(target[:10], target)
    with pytest.raises(ValueError, match="outside"):
        metrics.dice(target, np.full_like(target, 5))
    with pytest.raises(ValueError, match="outside"):
        metrics.jaccard(target.astype(int) - 1, target)
