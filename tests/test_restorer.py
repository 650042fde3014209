"""The Restorer API on real faces (random-weight networks of the real architectures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smfd.errors import InputError
from smfd.images import read_image
from smfd.restorer import Restorer
from smfd.runtime import pick_device


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


def test_a_black_and_white_face_comes_back_black_and_white(restorer, face):
    import cv2

    grey = np.repeat(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    out = restorer.restore(grey)
    assert (out[..., :1] == out).all() and np.abs(out.astype(int) - grey).mean() > 1  # restored, in grey
    coloured = restorer.restore(face)
    assert not (coloured[..., :1] == coloured).all()


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


def test_missing_weights_and_unknown_devices_are_named(tmp_path, random_weights, monkeypatch):
    with pytest.raises(InputError, match="mask_generator.safetensors"):
        Restorer.from_pretrained(tmp_path)
    with pytest.raises(InputError, match="model weights not found"):  # an empty name is not the default
        Restorer.from_pretrained("")
    with pytest.raises(InputError, match="auto, cpu or cuda, got 'tpu'"):
        Restorer.from_pretrained(random_weights, "tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # refused on a GPU machine too
    with pytest.raises(InputError, match="no CUDA GPU is available"):
        pick_device("cuda:0")
    # a mask generator of the 19 classes (smfd train mask --set classes=19) beside SMFD-UNet:
    # named when loading, not a ValueError at the first face
    from smfd.models import MaskNetConfig
    from smfd.restorer import save_random_weights

    classes = save_random_weights(tmp_path / "classes", mask_config=MaskNetConfig(classes=19))
    with pytest.raises(InputError, match=r"mask_generator.safetensors predicts 19 classes .* needs both to be "
                                         r"the 5 groups"):
        Restorer.from_pretrained(classes)


def test_top_level_import():
    from smfd import Restorer as top
    from smfd.restorer import Restorer

    assert top is Restorer


def test_a_chosen_gpu_s_own_name_picks_it_again(monkeypatch):
    """The app loads the baselines on str(its restorer's device), 'cuda:0' on a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = pick_device("cuda", rank=1)
    assert pick_device(str(chosen)) == chosen == torch.device("cuda", 1)
    for bad in ("cuda:2", "cuda:x", "cuda:-1"):
        with pytest.raises(InputError, match=f"device '{bad}': no such CUDA GPU \\(2 here\\)"):
            pick_device(bad)


def test_the_mask_of_a_mirrored_face_is_the_mirrored_mask(face):
    """The mask averages the face and its mirror image (the 5 groups are left-right symmetric).
    The shipped generator: a random one gives nearly the same probabilities for any image."""
    shipped = Restorer.from_pretrained(None, "cpu", "pytorch")
    p = shipped.mask_probabilities(face)
    mirrored = shipped.mask_probabilities(np.ascontiguousarray(face[:, ::-1]))
    assert p.shape == (256, 256, 5) and np.allclose(p.sum(-1), 1, atol=1e-4)
    assert np.allclose(mirrored[:, ::-1], p, atol=1e-3)
    assert np.abs(mirrored - p).max() > 0.5  # the face is not symmetric: the test can tell


def _watched_restorer(random_weights, tmp_path, config):
    """A Restorer of the random mask generator and a random SMFD-UNet of ``config``, and the list
    that collects every mask SMFD-UNet is given."""
    import shutil

    import torch

    from smfd import checkpoint
    from smfd.models import SMFDNet
    from smfd.restorer import weight_files

    torch.manual_seed(1)
    folder = tmp_path / "watched"
    folder.mkdir()
    shutil.copy(weight_files(random_weights)[0], weight_files(folder)[0])
    checkpoint.save(weight_files(folder)[1], SMFDNet(config).eval())
    restorer = Restorer.from_pretrained(folder, device="cpu", engine="pytorch")
    seen = []
    deblur = restorer.engine.deblur
    restorer.engine.deblur = lambda x, m: seen.append(m) or deblur(x, m)
    return restorer, seen


def test_a_soft_mask_network_gets_the_generators_probabilities(random_weights, face, tmp_path):
    """A soft_mask SMFD-UNet is fed the mask generator's probabilities; a given label map is
    always one-hot."""
    import torch

    from smfd.models import SMFDConfig

    soft, seen = _watched_restorer(random_weights, tmp_path, SMFDConfig(soft_mask=True))
    result = soft.restore_face(face)
    assert result.generated
    probs = torch.from_numpy(soft.mask_probabilities(face)).permute(2, 0, 1)
    assert torch.allclose(seen[0][0], probs, atol=1e-6) and 0 < seen[0].max() < 1
    given = soft.restore_face(face, result.groups)
    assert set(seen[1].unique().tolist()) == {0.0, 1.0} and not given.generated


def test_without_generated_parts_the_generators_facial_parts_join_face_skin(random_weights, face, tmp_path):
    """generated_parts=False: the generated mask reaches SMFD-UNet with its facial-parts
    probability added to face skin (the other groups as they are); the map returned is still the
    generator's, and a given label map keeps its facial parts."""
    import torch

    from smfd.models import SMFDConfig

    restorer, seen = _watched_restorer(random_weights, tmp_path, SMFDConfig(soft_mask=True, generated_parts=False))
    result = restorer.restore_face(face)
    probs = torch.from_numpy(restorer.mask_probabilities(face)).permute(2, 0, 1)
    assert probs[2].max() > 0.01  # the generator does give facial parts here
    fed = seen[0][0]
    assert fed[2].abs().max() == 0
    assert torch.allclose(fed[1], probs[1] + probs[2], atol=1e-6)
    assert torch.allclose(fed[[0, 3, 4]], probs[[0, 3, 4]], atol=1e-6)
    assert np.array_equal(result.groups, restorer.mask(face))
    given = np.zeros((256, 256), np.uint8)
    given[100:140, 90:170] = 2
    restorer.restore_face(face, given)
    assert seen[1][0, 2].sum() == 40 * 80


def test_every_caller_restores_through_the_same_call(restorer, face, tmp_path, random_weights):
    """The CLI, the whole-photo path, the app and the eval's SMFD method give the same face the
    same restoration (colours included): they all call Restorer.restore_face."""
    from app.context import AppContext
    from baselines import load
    from smfd.cli import main
    from smfd.faces import detect_faces
    from smfd.images import write_png
    from smfd.photos import align_face, restore_photo

    expected = restorer.restore(face)
    assert not np.array_equal(expected, restorer.restore(face, keep_colours=False))  # an explicit choice
    ctx = AppContext(restorer=restorer, examples=[], work_dir=tmp_path / "app")
    assert np.array_equal(ctx.run_method("smfd", face), expected)
    assert np.array_equal(load("smfd", restorer=restorer).restore(face), expected)
    write_png(tmp_path / "in" / "face.png", face)
    assert main(["restore", str(tmp_path / "in"), str(tmp_path / "out"), "--aligned", "--weights",
                 str(random_weights), "--device", "cpu"]) == 0
    assert np.array_equal(read_image(tmp_path / "out" / "face.png"), expected)
    faces = detect_faces(face)
    _, report = restore_photo(face, restorer, faces=faces)
    crop = align_face(face, faces[0])
    assert np.array_equal(report.faces[0].result, restorer.restore_face(crop, keep_colours=True).image)


def test_keeping_the_input_s_colours_removes_a_wide_shift_and_keeps_detail(face):
    """with_input_colours: a colour cast of the restored face is taken back to the input's colours,
    detail finer than the width stays, and the coarse-grid blur it uses for speed stays within a
    level of the full-size Gaussian blur."""
    import cv2

    from smfd.restorer import COLOUR_SIGMA, with_input_colours

    blurry = cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA)
    cast = np.clip(blurry.astype(np.int16) + np.array([12, -8, 5]), 0, 255).astype(np.uint8)
    back = with_input_colours(cast, blurry)
    assert np.abs(back.astype(int) - blurry).mean() < 0.25 * np.abs(cast.astype(int) - blurry).mean()
    detail = blurry.astype(np.int16)
    detail[::2, ::2] += 10  # pixel-fine detail, not colour
    detail = np.clip(detail, 0, 255).astype(np.uint8)
    kept = with_input_colours(detail, blurry).astype(int) - blurry
    assert kept[::2, ::2].mean() - kept[1::2, 1::2].mean() > 9
    for size in ((256, 256), (255, 255), (250, 250), (512, 384)):  # grids of every factor, and none
        for gray in (False, True):
            b = cv2.resize(blurry, size, interpolation=cv2.INTER_AREA)
            c = cv2.resize(cast, size, interpolation=cv2.INTER_AREA)
            b, c = (cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)) if gray else (b, c)
            for sigma in (16.0, COLOUR_SIGMA):
                r = c.astype(np.float32)
                full = np.clip(np.rint(r + cv2.GaussianBlur(b.astype(np.float32) - r, (0, 0), sigma)), 0, 255)
                out = with_input_colours(c, b, sigma)
                assert out.shape == c.shape and np.abs(out.astype(int) - full).max() <= 1, (size, gray, sigma)


def test_fine_detail_beyond_the_networks_256_px_keeps_edges_and_drops_noise():
    """with_fine_detail: what a face larger than 256 px holds beyond its 256 px copy comes back
    where it stands out (an edge) and not where it is of the typical size (noise)."""
    from smfd.restorer import with_fine_detail

    low = np.full((512, 512, 3), 120, np.uint8)
    image = low.astype(np.float32) + np.random.default_rng(0).normal(0, 6, low.shape)
    image[:, 200:202] += 60  # a thin line the 256 px copy lost
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    restored = np.full_like(low, 100)  # what the networks made of the 256 px copy
    out = with_fine_detail(restored, image, low).astype(int) - 100
    assert np.abs(out[:, :190]).mean() < 0.5  # noise: mean |deviation| 4.8 in the image
    assert out[:, 200:202].mean() > 40  # the line: 60 in the image


def test_only_a_face_larger_than_the_networks_see_gets_fine_detail(restorer, face, monkeypatch):
    """A smaller face loses nothing the 256 px work copy could not hold; resampling differences
    there (mostly exactly 0, so nothing would be cored) must not be added."""
    import cv2

    from smfd import restorer as module

    calls = []
    real = module.with_fine_detail
    monkeypatch.setattr(module, "with_fine_detail", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    for side in (128, 200, 256, 300):
        restorer.restore(cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA))
    assert calls == [(300, 300, 3)]
