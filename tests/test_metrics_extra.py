"""NIQE, LPIPS, FID, identity similarity and landmark distance: against references and edge cases."""

from __future__ import annotations

import sys
import tarfile
import types
from unittest import mock

import cv2
import numpy as np
import pytest
import torch

from eval import niqe, perceptual
from smfd import data, identity
from smfd.errors import MetricUnavailable


@pytest.fixture(scope="module")
def faces(celeba) -> list[np.ndarray]:
    """Four real faces at 256x256 (the benchmark size) and one at 512x512."""
    records = data.open_dataset(celeba)[:4]
    small = [data.load_face(r, size=256)[0] for r in records]
    return small + [data.load_face(records[0])[0]]


# ---------------------------------------------------------------- NIQE

@pytest.fixture(scope="module")
def basicsr_niqe():
    """basicsr 1.4.2's own NIQE code, read from the source package that 'make install' fetched
    (basicsr cannot be imported on current torchvision, so its two modules are run standalone)."""
    sdist = niqe.niqe_dir() / niqe.SDIST
    assert sdist.is_file(), f"{sdist} missing: run 'make install' (python -m eval.niqe fetch)"
    with tarfile.open(sdist) as tar:
        source = {m: tar.extractfile(f"basicsr-1.4.2/basicsr/{m}.py").read().decode()
                  for m in ("metrics/niqe", "utils/matlab_functions")}
    stubs = {name: types.ModuleType(name) for name in
             ("basicsr", "basicsr.utils", "basicsr.metrics", "basicsr.metrics.metric_util",
              "basicsr.utils.registry", "basicsr.utils.matlab_functions")}
    stubs["basicsr.metrics.metric_util"].reorder_image = stubs["basicsr.metrics.metric_util"].to_y_channel = None
    stubs["basicsr.utils.registry"].METRIC_REGISTRY = types.SimpleNamespace(register=lambda: (lambda f: f))
    exec(source["utils/matlab_functions"], stubs["basicsr.utils.matlab_functions"].__dict__)
    with mock.patch.dict(sys.modules, stubs):
        module = types.ModuleType("basicsr_niqe")
        exec(source["metrics/niqe"], module.__dict__)
    return module, stubs["basicsr.utils.matlab_functions"]


def test_pristine_parameters_are_the_published_ones(tmp_path, monkeypatch):
    mu, cov, window = niqe.pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert np.allclose(cov, cov.T) and abs(window.sum() - 1) < 1e-6
    # Any other file in their place (here: the same arrays, one value changed) is refused.
    other = tmp_path / "niqe_pris_params.npz"
    np.savez(other, mu_pris_param=mu + 1e-3, cov_pris_param=cov, gaussian_window=window)
    monkeypatch.setattr(niqe, "params_path", lambda: other)
    niqe.pristine_model.cache_clear()
    try:
        with pytest.raises(MetricUnavailable, match="is not the published pristine model"):
            niqe.pristine_model()
    finally:
        niqe.pristine_model.cache_clear()


def test_niqe_matches_basicsr(faces, basicsr_niqe):
    """Same features and score as basicsr (validated there against MATLAB). basicsr computes the
    half-resolution scale in float32; fed that scale, ours agrees to 1e-3, and to 1 % as it is."""
    reference, matlab = basicsr_niqe
    mu, cov, window = niqe.pristine_model()
    for face in faces:
        y = niqe.luma(face)
        theirs = reference.niqe(y, mu[None], cov, window)
        assert niqe.niqe(face) == pytest.approx(theirs, rel=0.01)
        half32 = matlab.imresize(y / 255.0, scale=0.5, antialiasing=True) * 255.0
        assert np.abs(niqe.half_size(y) - half32).max() < 1e-3
        with mock.patch.object(niqe, "half_size", lambda img: matlab.imresize(img / 255.0, 0.5) * 255.0):
            assert niqe.niqe_gray(y) == pytest.approx(theirs, abs=1e-3)


def test_aggd_fit_matches_basicsr(faces, basicsr_niqe):
    reference, _ = basicsr_niqe
    coeffs = niqe.mscn(niqe.luma(faces[0]), niqe.pristine_model()[2])[:96, :96]
    assert np.allclose(niqe.aggd_fit(coeffs), reference.estimate_aggd_param(coeffs))
    assert np.allclose(niqe.block_features(coeffs), reference.compute_feature(coeffs))


def test_niqe_ranks_degradations(faces):
    """Natural-scene statistics: blur and noise both move a face away from pristine images."""
    rng = np.random.default_rng(0)
    for face in faces[:2]:
        sharp = niqe.niqe(face)
        assert niqe.niqe(cv2.GaussianBlur(face, (0, 0), 2.5)) > sharp + 1
        noisy = np.clip(face + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8)
        assert niqe.niqe(noisy) > sharp + 1


def test_niqe_edge_cases(faces):
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe.niqe(faces[0][:100, :100])
    with pytest.raises(ValueError, match="RGB uint8"):
        niqe.niqe(faces[0].astype(np.float32))
    with pytest.raises(ValueError, match="flat image"):
        niqe.niqe(np.full((192, 192, 3), 128, np.uint8))
    assert np.isfinite(niqe.niqe(faces[0][:96, :192]))  # exactly two blocks


def test_niqe_without_parameters_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))
    niqe.pristine_model.cache_clear()
    try:
        with pytest.raises(MetricUnavailable, match="python -m eval.niqe fetch"):
            niqe.pristine_model()
    finally:
        monkeypatch.undo()
        niqe.pristine_model.cache_clear()


def test_matlab_resize_matrix_properties():
    m = niqe.resize_matrix(10, 0.5)
    assert m.shape == (5, 10) and np.allclose(m.sum(1), 1)  # rows are normalised weights
    assert np.allclose(m, m[::-1, ::-1])  # symmetric kernel, symmetric boundary


# ---------------------------------------------------------------- LPIPS and FID

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def test_lpips_and_fid_are_unavailable_without_backbones(torch_home):
    with pytest.raises(MetricUnavailable, match="alexnet-owt-7be5be79.pth") as e:
        perceptual.LPIPS()
    assert "download.pytorch.org" in e.value.remedy
    with pytest.raises(MetricUnavailable, match="pt_inception-2015-12-05-6726825d.pth"):
        perceptual.FID()


def test_lpips_code_path_with_a_random_backbone(torch_home, faces):
    """The real lpips package path, with a randomly initialised AlexNet where the ImageNet one
    would be (values are meaningless; the code path and its invariants are tested)."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), torch_home / perceptual.ALEXNET[0])
    metric = perceptual.LPIPS()
    a, b = faces[0], faces[1]
    assert metric(a, a) == pytest.approx(0, abs=1e-6)
    assert metric(a, b) > 0 and metric(a, b) == pytest.approx(metric(b, a), rel=1e-5)


def test_fid_code_path_with_a_random_inception(torch_home, faces):
    from pytorch_fid import inception

    torch.manual_seed(0)
    with mock.patch.object(inception, "load_state_dict_from_url", return_value=None), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, state, strict=True: None):
        random_net = inception.fid_inception_v3()
    torch.save(random_net.state_dict(), torch_home / perceptual.FID_INCEPTION[0])
    metric = perceptual.FID(dims=64)  # the first block: a 64x64 matrix square root keeps it fast
    sharp = faces[:4]
    blurred = [cv2.GaussianBlur(f, (0, 0), 3) for f in sharp]
    assert metric(sharp, sharp) == pytest.approx(0, abs=1e-3)
    assert metric(blurred, sharp) > 1e-3
    with pytest.raises(ValueError, match="at least two"):
        metric(sharp[:1], sharp)
    # faces of two sizes in one set (each is resized to 299 by the network): no stacking error,
    # and the same statistics as each size's own features
    mixed = sharp[:2] + [cv2.resize(f, (200, 200), interpolation=cv2.INTER_AREA) for f in sharp[2:]]
    assert np.allclose(metric.features(mixed), np.concatenate([metric.features(mixed[:2]), metric.features(mixed[2:])]))


# ---------------------------------------------------------------- identity and landmarks

def test_identity_and_landmarks(faces):
    g = identity.geometry()
    a, b = faces[0], faces[1]
    dist, lmd = g.compare(a, a)
    assert dist == pytest.approx(0.0, abs=1e-6) and lmd == 0
    blurred = cv2.GaussianBlur(a, (0, 0), 2)
    dist_blur, lmd_blur = g.compare(blurred, a)
    dist_other, lmd_other = g.compare(b, a)
    assert 0 < dist_blur < identity.SAME_PERSON < dist_other and lmd_blur < lmd_other
    assert g.distances([a, blurred, b], a) == pytest.approx([0.0, dist_blur, dist_other], abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        g.compare(a, faces[4])


def test_identity_falls_back_to_the_central_box():
    g = identity.geometry()
    flat = np.full((256, 256, 3), 90, np.uint8)
    box = g.face_box(flat)  # no face: the central 80 %
    assert (box.left(), box.top(), box.right(), box.bottom()) == (25, 25, 230, 230)
