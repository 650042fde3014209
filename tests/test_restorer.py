"""The Restorer API on real faces (random-weight networks of the real architectures)."""

from __future__ import annotations

import numpy as np
import pytest

from smfd.images import InputError, read_image
from smfd.restorer import Restorer


@pytest.fixture(scope="module")
def restorer(random_weights):
    return Restorer.from_pretrained(random_weights, device="cpu")


@pytest.fixture(scope="module")
def face(celeba):
    return read_image(sorted((celeba / "images").glob("*.jpg"))[0])


@pytest.mark.parametrize("size", [(512, 512), (300, 200), (64, 96)])
def test_any_crop_size_comes_back_at_its_size(restorer, face, size):
    import cv2

    image = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
    out = restorer.restore(image)
    groups = restorer.mask(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert groups.shape == image.shape[:2] and groups.dtype == np.uint8 and groups.max() <= 4


def test_given_mask_changes_the_result(restorer, face):
    plain = np.zeros(face.shape[:2], np.uint8)
    hair = np.full(face.shape[:2], 3, np.uint8)
    assert not np.array_equal(restorer.restore(face, plain), restorer.restore(face, hair))
    assert np.array_equal(restorer.restore(face, plain), restorer.restore(face, plain))  # deterministic


def test_bad_inputs_are_refused(restorer, face):
    with pytest.raises(InputError, match="RGB uint8"):
        restorer.restore(face.astype(np.float32))
    with pytest.raises(InputError, match="RGB uint8"):
        restorer.restore(face[..., 0])
    with pytest.raises(ValueError, match="0..4"):
        restorer.restore(face, np.full(face.shape[:2], 7, np.uint8))


def test_missing_weights_and_unknown_devices_are_named(tmp_path, random_weights):
    with pytest.raises(InputError, match="mask_generator.safetensors"):
        Restorer.from_pretrained(tmp_path)
    with pytest.raises(InputError, match="auto, cpu or cuda, got 'tpu'"):
        Restorer.from_pretrained(random_weights, "tpu")

def test_top_level_import():
    from smfd import Restorer as top
    from smfd.restorer import Restorer

    assert top is Restorer


def test_the_mask_of_a_mirrored_face_is_the_mirrored_mask(restorer, face):
    """The mask averages the face and its mirror image (the 5 groups are left-right symmetric)."""
    p = restorer.mask_probabilities(face)
    mirrored = restorer.mask_probabilities(np.ascontiguousarray(face[:, ::-1]))
    assert p.shape == (256, 256, 5) and np.allclose(p.sum(-1), 1, atol=1e-4)
    assert np.allclose(mirrored[:, ::-1], p, atol=1e-3)


def test_a_soft_mask_network_gets_the_generators_probabilities(random_weights, face, tmp_path):
    import shutil

    import torch

    from smfd import checkpoint
    from smfd.models import SMFDConfig, SMFDNet
    from smfd.restorer import weight_files

    torch.manual_seed(1)
    folder = tmp_path / "soft"
    folder.mkdir()
    shutil.copy(weight_files(random_weights)[0], weight_files(folder)[0])
    checkpoint.save(weight_files(folder)[1], SMFDNet(SMFDConfig(soft_mask=True)).eval())
    soft = Restorer.from_pretrained(folder, device="cpu")
    probs = soft.mask_probabilities(face)
    _, m = soft.deblur_inputs(face, probs)
    assert torch.allclose(m[0].permute(1, 2, 0), torch.from_numpy(probs))
    # a given label map is one-hot, also for a soft_mask network
    _, hot = soft.deblur_inputs(face, probs.argmax(-1).astype(np.uint8))
    assert set(hot.unique().tolist()) == {0.0, 1.0}
    assert np.array_equal(soft.restore(face), soft.restore(face, probs))
