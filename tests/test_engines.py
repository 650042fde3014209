"""The inference engines behind the Restorer: OpenVINO against the PyTorch reference on real
held-out faces with the shipped weights, the on-disk cache, and the fallback where OpenVINO is
absent. Cache tests use small networks of the real architecture so that converting is quick."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smfd import data, engines, metrics
from smfd.engines import OpenVINOEngine, TorchEngine, make_engine, openvino_version
from smfd.errors import InputError
from smfd.models import MaskNet, MaskNetConfig, SMFDConfig, SMFDNet
from smfd.restorer import Restorer


# OpenVINO (bf16 where the CPU runs it natively) against PyTorch (bf16 autocast likewise) on the
# same faces: both round differently, and where the mask generator is unsure a pixel's group can
# flip, which moves a few pixels by tens of levels. Measured on the shipped weights: mean absolute
# difference ~0.2 levels, PSNR of one output against the other above 45 dB, the PSNR against the
# sharp face within 0.01 dB.
MEAN_LEVELS = 1.0
MIN_PSNR_BETWEEN = 38.0
PSNR_CHANGE = 0.05


@pytest.fixture(scope="module")
def held_out(celeba):
    records = [r for r in data.select(data.open_dataset(celeba), "test") if r.has_mask]
    return [data.benchmark_pair(r, seed=0) for r in records[:4]]


@pytest.fixture(scope="module")
def shipped():
    """The shipped weights through both engines (OpenVINO from the cache after the first run)."""
    return (Restorer.from_pretrained(device="cpu", engine="pytorch"),
            Restorer.from_pretrained(device="cpu", engine="openvino"))


def test_openvino_matches_pytorch_on_held_out_faces(shipped, held_out):
    reference, engine = shipped
    assert isinstance(reference.engine, TorchEngine) and isinstance(engine.engine, OpenVINOEngine)
    change = []
    for blurry, sharp, groups, _ in held_out:
        for mask in (None, groups):  # generated and given masks
            a, b = reference.restore(blurry, mask), engine.restore(blurry, mask)
            assert np.abs(a.astype(np.int16) - b).mean() <= MEAN_LEVELS
            assert metrics.psnr(a, b) >= MIN_PSNR_BETWEEN
            change.append(metrics.psnr(b, sharp) - metrics.psnr(a, sharp))
        # The masks agree too: the same group at 99 % of the pixels (a per-group Dice would hang on
        # the few pixels of a small group such as the accessories).
        assert (engine.mask(blurry) == reference.mask(blurry)).mean() > 0.99
    assert abs(np.mean(change)) <= PSNR_CHANGE


def small_networks(seed: int = 0, soft_mask: bool = False) -> tuple[MaskNet, SMFDNet]:
    torch.manual_seed(seed)
    mask = MaskNet(MaskNetConfig(encoder=(8, 16), decoder=(8,), head=8))
    deblur = SMFDNet(SMFDConfig(encoder=(8, 16), mask_encoder=(4, 8), decoder=(8,), head=8, residual=True,
                                match_input_mean=True, soft_mask=soft_mask))
    return mask.eval(), deblur.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, celeba):
    """(cache folder, face, restoration): small_networks(0) converted once, for the tests that start
    from its cache entry (each on a copy: they damage it), and its restoration of a face."""
    folder = tmp_path_factory.mktemp("engine-cache")
    face = data.benchmark_pair(data.open_dataset(celeba)[0])[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMFD_CACHE", str(folder))
        restorer = Restorer(*small_networks(0), engine="openvino")
    assert restorer.engine.converted_in is not None  # converted then, not found in a cache
    return folder, face, restorer.restore(face)


def cache_copy(converted, tmp_path, monkeypatch):
    """$SMFD_CACHE set to a copy of the converted cache."""
    shutil.copytree(converted[0], tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))


def test_conversion_is_cached_per_weights(converted, tmp_path, monkeypatch):
    cache_copy(converted, tmp_path, monkeypatch)
    _, face, reference = converted
    same = Restorer(*small_networks(0), engine="openvino")  # the same weights: a cache hit
    assert same.engine.converted_in is None and same.engine.folder.parent == tmp_path / "engines"
    assert np.array_equal(same.restore(face), reference)
    other = Restorer(*small_networks(1), engine="openvino")  # other weights: converted anew
    assert other.engine.converted_in is not None and other.engine.folder != same.engine.folder
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == sorted(
        [same.engine.folder.name, other.engine.folder.name])  # no half-written leftovers
    # bf16 asked for: the engine names what OpenVINO runs (f32 on a CPU without bf16), as timings print it
    from smfd.runtime import native_bf16

    monkeypatch.setenv("SMFD_BF16", "1")
    native_bf16.cache_clear()
    try:
        asked = Restorer(*small_networks(0), engine="openvino").engine
    finally:
        native_bf16.cache_clear()
    flags = Path("/proc/cpuinfo").read_text()
    runs = "bf16" if "avx512_bf16" in flags or "amx_bf16" in flags else "f32"
    assert asked.describe().startswith(f"openvino {runs}, ")


def test_a_damaged_or_unwritable_conversion_cache_costs_a_conversion_not_the_restorer(converted, tmp_path, monkeypatch):
    """A .bin cut short (power loss) or with bytes changed at the same size (a bad disk: OpenVINO
    ran such weights without a word), an entry of which only compiled/ is left, and a cache that
    cannot be written: each is converted again (and cached where it can be), never an error."""
    cache_copy(converted, tmp_path, monkeypatch)
    _, face, reference = converted
    folder = Restorer(*small_networks(0), engine="openvino").engine.folder
    weights = folder / "deblur.bin"
    whole = weights.read_bytes()
    for damaged in (whole[: len(whole) // 2], whole[:1000] + bytes(b ^ 0x5A for b in whole[1000:3000]) + whole[3000:]):
        shutil.rmtree(folder / "compiled", ignore_errors=True)  # OpenVINO's blobs of the sound entry
        weights.write_bytes(damaged)
        again = Restorer(*small_networks(0), engine="openvino")
        assert again.engine.converted_in is not None and np.array_equal(again.restore(face), reference)
        assert weights.read_bytes() == whole  # the entry was written again
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # not 0700: a shared cache's other users read it
    for name in ("mask.xml", "mask.bin", "deblur.xml", "deblur.bin"):
        (folder / name).unlink()
    (folder / "compiled").mkdir(exist_ok=True)
    third = Restorer(*small_networks(0), engine="openvino")
    assert third.engine.converted_in is not None and (folder / "deblur.xml").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # nothing left aside
    shutil.rmtree(folder / "compiled", ignore_errors=True)
    (folder / "compiled").write_text("in the way")  # OpenVINO's compiled blobs cannot be kept
    blobless = Restorer(*small_networks(0), engine="openvino")
    assert blobless.engine.converted_in is None and np.array_equal(blobless.restore(face), reference)
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path / "cache-is-a-file"))
    (tmp_path / "cache-is-a-file").write_text("not a folder")
    uncached = Restorer(*small_networks(0), engine="openvino")
    assert np.array_equal(uncached.restore(face), reference)


def test_without_openvino_auto_falls_back_to_pytorch(monkeypatch, random_weights):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    assert openvino_version() is None
    restorer = Restorer.from_pretrained(random_weights, "cpu")  # engine="auto"
    assert isinstance(restorer.engine, TorchEngine)
    with pytest.raises(InputError, match="needs OpenVINO"):
        Restorer.from_pretrained(random_weights, "cpu", engine="openvino")


def test_int8_without_nncf_is_refused_before_converting(monkeypatch, random_weights):
    monkeypatch.setattr(engines, "nncf_version", lambda: None)  # nncf not installed
    monkeypatch.setattr(OpenVINOEngine, "_convert", lambda *a: pytest.fail("converted first"))
    with pytest.raises(InputError, match="needs nncf"):
        Restorer.from_pretrained(random_weights, "cpu", engine="openvino-int8")


def test_each_pytorch_restorer_runs_on_its_own_threads(random_weights, monkeypatch):
    """Threads were set for the whole process when a Restorer was built: the last one built won,
    so a 1-thread Restorer timed after a 2-thread one was built ran on 2."""
    one = Restorer.from_pretrained(random_weights, "cpu", "pytorch", threads=1)
    two = Restorer.from_pretrained(random_weights, "cpu", "pytorch", threads=2)
    seen = []
    for restorer in (one, two):
        deblur = restorer.engine.deblur
        monkeypatch.setattr(restorer.engine, "deblur", lambda x, m, deblur=deblur: seen.append(torch.get_num_threads())
                            or deblur(x, m))
        restorer.restore(np.full((256, 256, 3), 120, np.uint8))
    assert seen == [1, 2] and "1 threads" in one.engine.describe()
    with pytest.raises(InputError, match="threads must be a number of threads from 1 to 1024, got -2"):
        make_engine("pytorch", one.mask_model, one.deblur_model, torch.device("cpu"), 256, threads=-2)


def test_openvino_sends_no_usage_statistics(tmp_path):
    """OpenVINO's telemetry (Google Analytics, a client id in ~/intel) starts at its import; the
    project runs offline and sends nothing."""
    import subprocess

    script = ("import smfd.engines, openvino.tools.ovc, nncf; "
              "assert smfd.engines.openvino_version(), 'openvino is installed'")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "intel").exists()


def test_gpu_uses_pytorch_and_names_unknown_engines():
    mask, deblur = small_networks()
    assert isinstance(make_engine("auto", mask, deblur, torch.device("cuda"), 256), TorchEngine)
    with pytest.raises(InputError, match="runs on the CPU: add --device cpu, or use --engine pytorch for cuda"):
        make_engine("openvino", mask, deblur, torch.device("cuda"), 256)
    with pytest.raises(InputError, match="engine must be one of"):
        make_engine("tensorrt", mask, deblur, torch.device("cpu"), 256)


def test_smfd_threads_sets_both_engines_and_nonsense_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))
    mask, deblur = small_networks()
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SMFD_THREADS", "1")
        assert make_engine("pytorch", mask, deblur, torch.device("cpu"), 256).torch_threads == 1
        assert torch.get_num_threads() == before  # the engine's own, not the process's
        assert make_engine("openvino", mask, deblur, torch.device("cpu"), 64).threads == 1
        for nonsense in ("abc", "0", "-2", "2.5"):
            monkeypatch.setenv("SMFD_THREADS", nonsense)
            with pytest.raises(InputError, match=f"^\\$SMFD_THREADS must be a number of threads from 1 to 1024, "
                                                 f"got '{nonsense}'"):
                make_engine("pytorch", mask, deblur, torch.device("cpu"), 256)
    finally:
        torch.set_num_threads(before)


def test_nonsense_smfd_bf16_is_named_before_the_networks_load(monkeypatch):
    """'yes' or 'true' silently let the machine decide; only 0 and 1 mean something."""
    from smfd import restorer
    from smfd.runtime import native_bf16

    monkeypatch.setattr(restorer, "load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
    try:
        for nonsense in ("yes", "true", "2"):
            monkeypatch.setenv("SMFD_BF16", nonsense)
            native_bf16.cache_clear()
            with pytest.raises(InputError, match=f"^\\$SMFD_BF16 must be 0 \\(float32\\) or 1 \\(bf16\\), "
                                                 f"got '{nonsense}'$"):
                restorer.Restorer.from_pretrained(None, "cpu")
        monkeypatch.setenv("SMFD_BF16", " 1")
        native_bf16.cache_clear()
        assert native_bf16("cpu")
    finally:
        native_bf16.cache_clear()


@pytest.mark.parametrize("engine", ["pytorch", "openvino"])
def test_soft_mask_weights_get_probabilities_and_given_masks_one_hot(engine, tmp_path, monkeypatch, celeba):
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))
    face = data.benchmark_pair(data.open_dataset(celeba)[0])[0]
    restorer = Restorer(*small_networks(2, soft_mask=True), engine=engine)
    seen = []
    deblur = restorer.engine.deblur
    monkeypatch.setattr(restorer.engine, "deblur", lambda x, m: seen.append(m) or deblur(x, m))
    generated = restorer.restore_face(face)
    p = torch.from_numpy(restorer.mask_probabilities(face)).permute(2, 0, 1)[None]
    assert torch.allclose(seen[0].float(), p, atol=1e-5)  # the probabilities themselves
    assert not torch.equal(seen[0], seen[0].round())
    restorer.restore_face(face, generated.groups)  # a given label map: one-hot
    assert torch.equal(seen[1], seen[1].round()) and torch.equal(seen[1].sum(1), torch.ones(1, 256, 256))


@pytest.mark.parametrize("engine", ["pytorch", "openvino"])
def test_a_mirrored_face_is_restored_as_the_mirror_image_in_every_engine(engine, tmp_path, monkeypatch, celeba):
    """Both networks average the face and its mirror image inside what the engine runs, so the
    restoration of a mirrored face is the mirrored restoration (up to rounding), and it is not
    a single pass's."""
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))
    face = data.benchmark_pair(data.open_dataset(celeba)[0])[0]
    mask_net = small_networks(3)[0]
    torch.manual_seed(3)
    deblur_net = SMFDNet(SMFDConfig(encoder=(8, 16), mask_encoder=(4, 8), decoder=(8,), head=8, soft_mask=True)).eval()
    with torch.no_grad():  # larger weights than at initialisation: an output far from symmetric
        for w in deblur_net.parameters():
            if w.dim() > 1:
                w.mul_(3)
    restorer = Restorer(mask_net, deblur_net, engine=engine)
    out = restorer.restore(face, keep_colours=False).astype(np.float32)
    mirrored = restorer.restore(np.ascontiguousarray(face[:, ::-1]), keep_colours=False)[:, ::-1]
    x = restorer.work_tensor(face)
    m = torch.from_numpy(restorer.mask_probabilities(face)).permute(2, 0, 1)[None]
    with torch.no_grad():
        passes = [deblur_net(x, m), deblur_net(x.flip(-1), m.flip(-1)).flip(-1)]
    one_pass, by_hand = (np.clip(p[0].permute(1, 2, 0).numpy(), 0, 1) * 255 for p in (passes[0], sum(passes) / 2))
    assert np.abs(out - mirrored).mean() < 0.1
    # the engine's bf16 against float32 here: measured 1.6 levels; one pass alone: 73
    assert np.abs(out - by_hand).mean() < 6 and np.abs(out - one_pass).mean() > 20


def test_int8_engine_is_calibrated_and_cached_apart(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path))  # its own: the float engine is converted here too
    _, face, _ = converted
    calibrated = []
    monkeypatch.setattr("smfd.restorer.calibration_faces",  # the faces the int8 conversion calibrates on
                        lambda *a, **k: calibrated.append(engines.calibration_faces(*a, **k)) or calibrated[-1])
    float_engine = Restorer(*small_networks(3), engine="openvino")
    int8 = Restorer(*small_networks(3), engine="openvino-int8")
    assert int8.engine.int8 and int8.engine.folder != float_engine.engine.folder
    assert [len(faces) for faces in calibrated] == [engines.CALIBRATION_FACES]  # the int8 engine's only
    for name in ("mask.xml", "deblur.xml"):  # the stored networks are quantised, the float ones not
        assert 'type="FakeQuantize"' in (int8.engine.folder / name).read_text()
        assert 'type="FakeQuantize"' not in (float_engine.engine.folder / name).read_text()
    a, b = float_engine.restore(face), int8.restore(face)
    assert b.shape == a.shape and not np.array_equal(a, b) and metrics.psnr(a, b) > 25  # nearly the same
    assert "int8" in int8.engine.describe()


def test_openvino_restores_with_one_pytorch_thread_and_gives_the_setting_back(shipped, held_out):
    """Around OpenVINO's networks PyTorch runs on one thread (its idle threads would spin on the
    cores OpenVINO computes on), and the setting is back afterwards; a restore in another thread
    (the app restores from a background thread too) leaves this thread's setting alone."""
    import threading

    reference, engine = shipped
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # else a one-core runner would pass without checking anything
    seen = []
    inner = engine.engine.deblur

    def deblur(x, m):
        seen.append(torch.get_num_threads())
        return inner(x, m)

    engine.engine.deblur = deblur
    try:
        engine.restore(held_out[0][0])
        assert seen == [1] and torch.get_num_threads() == 2
        reference.restore(held_out[0][0])  # the PyTorch engine keeps the setting
        assert torch.get_num_threads() == 2
        other = {}

        def restore_there():
            other["before"] = torch.get_num_threads()
            engine.restore(held_out[1][0])
            other["after"] = torch.get_num_threads()

        t = threading.Thread(target=restore_there)
        t.start()
        t.join()
        assert seen == [1, 1] and other["after"] == other["before"] and torch.get_num_threads() == 2
    finally:
        engine.engine.deblur = inner
        torch.set_num_threads(before)
