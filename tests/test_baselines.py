"""The baselines: registry, weights handling, and each method's whole load-and-restore path.

No hub is reachable, so each external network is built with random weights in its real
architecture, saved as a checkpoint in its official format, and loaded back through
``load(name, weights=PATH)`` exactly as the official file would be.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

import cv2
import numpy as np
import pytest
import torch

import baselines
from baselines import WeightsDamaged, WeightsMissing, load, methods
from baselines.restoreformer_pp import RestoreFormerPP, RestoreFormerPPConfig
from smfd import metrics
from smfd.cli import main
from smfd.errors import InputError
from smfd.images import PARTIAL_PREFIX, read_image

EXTERNAL = ("gfpgan-1.3", "gfpgan-1.4", "codeformer", "restoreformer", "restoreformer++")


@pytest.fixture(scope="module")
def face(celeba) -> np.ndarray:
    """A real aligned face at the benchmark size."""
    image = read_image(sorted((celeba / "images").glob("*.jpg"))[0])
    return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMFD_CACHE", str(tmp_path / "cache"))


def check_restored(method, face: np.ndarray) -> np.ndarray:
    out = method.restore(face)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert out.std() > 0 and not np.array_equal(out, face)  # a real network output
    return out


# ---------------------------------------------------------------- registry

def test_registry_lists_every_method_with_its_terms():
    infos = {m.name: m for m in methods()}
    assert set(infos) == {*EXTERNAL, "deconv", "blurry", "smfd", "smfd-gt-mask"}
    for name in EXTERNAL:
        m = infos[name]
        assert m.needs_weights and m.native_size == 512 and m.url.startswith("https://github.com/")
        assert m.filename and m.url.replace("%2B", "+").endswith(m.filename)
        assert m.sha256 is None or len(m.sha256) == 64
    assert infos["codeformer"].commercial_use is False and "non-commercial" in infos["codeformer"].licence
    for name in ("gfpgan-1.3", "gfpgan-1.4"):  # StyleGAN2 and DFDNet parts, FFHQ-trained weights
        assert infos[name].commercial_use is False
        assert "StyleGAN2" in infos[name].licence and "DFDNet" in infos[name].licence
    for name in EXTERNAL:
        assert not infos[name].commercial_use
        assert name == "codeformer" or "FFHQ" in infos[name].notes and "not cleared" in infos[name].notes
    assert infos["restoreformer++"].sha256 is None and "not pinned" in infos["restoreformer++"].notes
    assert infos["smfd-gt-mask"].needs_mask and not infos["smfd"].needs_mask
    assert "PSF" in infos["deconv"].notes


def test_missing_weights_say_how_to_get_them():
    for name in EXTERNAL:
        # the option as the commands take it: NAME=PATH
        hint = f"smfd baselines download {name}.*--weights {re.escape(name)}=PATH"
        with pytest.raises(WeightsMissing, match=hint) as e:
            load(name)
        assert "\n" not in str(e.value) and isinstance(e.value, InputError)
    with pytest.raises(InputError, match="unknown method 'gfpgan'"):
        load("gfpgan")


def test_cli_list_and_download_errors(capsys):
    assert main(["baselines", "list"]) == 0
    out = capsys.readouterr().out
    assert "codeformer" in out and "NO" in out and "S-Lab" in out and "not pinned" in out
    assert "zero-shot" in out
    assert main(["baselines", "download", "blurry"]) == 2
    assert "needs no weights" in capsys.readouterr().err
    # Every name is checked before the first download starts (GFPGAN's would be tried first, and
    # fail otherwise: no network here).
    assert main(["baselines", "download", "gfpgan-1.4", "blurry"]) == 2
    assert capsys.readouterr().err.strip() == "smfd: error: blurry: nothing to download (needs no weights)"


def test_download_verifies_the_digest(tmp_path, capsys):
    """Through a file:// URL (no network): a pinned digest must match; an unpinned file is kept
    and its digest printed."""
    from baselines.weights import download

    source = tmp_path / "weights.pth"
    source.write_bytes(b"not really a network" * 100)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "w.pth"
    target.parent.mkdir()
    killed, running = (target.parent / f"{PARTIAL_PREFIX}{name}.part" for name in ("k1ll3d_x", "b3s1d3_y"))
    for part in (killed, running):
        part.write_bytes(b"x" * 1000)
    os.utime(killed, (time.time() - 3600,) * 2)  # a download killed an hour ago; the other one runs
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        download(source.as_uri(), target, "0" * 64)
    assert not target.exists() and list(target.parent.glob("*.part")) == [running]
    running.unlink()
    capsys.readouterr()
    assert download(source.as_uri(), target, digest) == target and target.read_bytes() == source.read_bytes()
    assert f"{target}: ok (sha256 {digest})" in capsys.readouterr().out
    target.unlink()
    download(source.as_uri(), target, None)
    assert target.is_file() and f"no SHA-256 is pinned for this file; computed {digest}" in capsys.readouterr().out
    with pytest.raises(InputError, match="download failed"):
        download((tmp_path / "absent.pth").as_uri(), tmp_path / "x.pth", None)
    # a file present but damaged is fetched again, not kept as "present already"
    pinned = tmp_path / "cache" / "pinned.pth"
    pinned.write_bytes(source.read_bytes()[:100])
    assert download(source.as_uri(), pinned, digest) == pinned and pinned.read_bytes() == source.read_bytes()


def test_an_unpinned_download_is_known_by_the_digest_recorded_then(tmp_path, monkeypatch, capsys):
    """RestoreFormer++ has no pinned digest: the one computed at its download is kept beside the file,
    so that a file damaged since is 'damaged' (fetched again by eval --download), not 'cached'."""
    from baselines import info, registry
    from baselines.weights import download, recorded_digest

    monkeypatch.setenv("SMFD_CACHE", str(tmp_path / "cache"))
    m = info("restoreformer++")
    source = tmp_path / "rf.ckpt"
    source.write_bytes(b"a checkpoint" * 1000)
    path = download(source.as_uri(), m.cached_path(), None)
    assert recorded_digest(path).read_text().strip() == hashlib.sha256(source.read_bytes()).hexdigest()
    assert m.cache_state() == "cached"
    path.write_bytes(source.read_bytes()[:100])  # cut short since
    assert m.cache_state() == "damaged"
    with pytest.raises(WeightsDamaged, match=r"not the file downloaded .*download restoreformer\+\+ --force"):
        registry.weights_file(m, None)
    download(source.as_uri(), path, None)  # `smfd baselines download` agrees: fetched again, not "present"
    assert path.read_bytes() == source.read_bytes() and m.cache_state() == "cached"
    assert "present, but not the file downloaded then" in capsys.readouterr().out
    recorded_digest(path).unlink()  # a file copied in by hand: nothing to compare it with
    assert m.cache_state() == "cached"


def with_method(monkeypatch, method) -> None:
    """The registry with ``method`` in place of the method of its name (e.g. another URL or digest)."""
    from baselines import registry

    monkeypatch.setattr(registry, "_METHODS", tuple(method if m.name == method.name else m for m in registry._METHODS))
    monkeypatch.setitem(registry._BY_NAME, method.name, method)


def test_an_unpinned_download_must_load_as_the_network(tmp_path, monkeypatch, capsys):
    """RestoreFormer++ has no published digest: an error page or a file cut short with no length
    announced is refused (fetched) or fetched again (present), not kept as "ok"."""
    import dataclasses

    from baselines import info, registry

    page = tmp_path / "page.html"
    page.write_text("<html>Sign in to the network</html>")
    portal = dataclasses.replace(info("restoreformer++"), url=page.as_uri())
    with_method(monkeypatch, portal)
    with pytest.raises(InputError, match=r"page.html: not a usable checkpoint \(cannot read the checkpoint safely .*"
                                         r"file discarded"):
        registry.download(portal.name)
    assert not portal.cached_path().exists() and not list(portal.cached_path().parent.glob("*.part"))
    portal.cached_path().write_bytes(page.read_bytes())  # kept by an earlier version
    with pytest.raises(InputError, match="not a usable checkpoint"):
        registry.download(portal.name)
    assert "RestoreFormer++.ckpt: present, but not a usable checkpoint (cannot read" in capsys.readouterr().out


def test_a_download_cut_short_is_refused(tmp_path):
    """A server that announces more bytes than it sends before closing: Python's read() then just
    ends, so without the length check a partial file of an unpinned method was kept as ok."""
    import http.server
    import threading

    from baselines.weights import download

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2000000")
            self.end_headers()
            self.wfile.write(b"x" * 500_000)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = tmp_path / "cache" / "RestoreFormer++.ckpt"
    try:
        with pytest.raises(InputError, match=r"download incomplete \(500,000 of 2,000,000 bytes\)"):
            download(f"http://127.0.0.1:{server.server_port}/w.ckpt", target, None)
    finally:
        server.shutdown()
    assert not target.exists() and not list(target.parent.glob("*.part"))


def test_weights_are_known_by_their_digest(tmp_path, monkeypatch, capsys):
    """A cached file that is not the official one is refused with the remedy; a --weights file that
    is another method's official release is refused; the results name the file a method ran."""
    import dataclasses

    from baselines import info, interface, registry, weights

    fake = tmp_path / "GFPGANv1.4.pth"
    fake.write_bytes(b"official bytes")
    official = dataclasses.replace(info("gfpgan-1.4"), sha256=hashlib.sha256(b"official bytes").hexdigest())
    with_method(monkeypatch, official)
    cached = official.cached_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"official by")  # cut short
    with pytest.raises(WeightsDamaged, match=r"not the official file: .*smfd baselines download gfpgan-1.4 --force"):
        registry.weights_file(official, None)
    main(["baselines", "list"])
    listed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("gfpgan-1.4 "))
    assert listed.split()[3] == "damaged"  # not "cached"
    # eval --download fetches a damaged file again, as it does a missing one (here from a file:// URL)
    (tmp_path / "official.pth").write_bytes(b"official bytes")
    with_method(monkeypatch, dataclasses.replace(official, url=(tmp_path / "official.pth").as_uri()))
    with pytest.raises(InputError, match="GFPGANv1.4.pth: "):  # fetched, then not a network: it is a test's bytes
        load("gfpgan-1.4", download_missing=True)
    assert cached.read_bytes() == b"official bytes" and official.cache_state() == "cached"
    hashed = []  # the cached official file is read once to be known (it was twice: state, then file)
    def counted(path) -> str:
        hashed.append(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    for module in (interface, registry, weights):
        monkeypatch.setattr(module, "sha256_of", counted)
    with pytest.raises(InputError, match="GFPGANv1.4.pth: "):
        load("gfpgan-1.4", download_missing=True)
    assert hashed == [cached]
    assert registry.weights_file(official, None)[1].startswith("the official GFPGANv1.4.pth (sha256 ")
    with pytest.raises(InputError, match=r"is the official GFPGANv1.4.pth of GFPGAN v1.4 .*not weights of GFPGAN v1.3"):
        registry.weights_file(info("gfpgan-1.3"), fake)
    other = tmp_path / "mine.pth"
    other.write_bytes(b"fine-tuned")
    assert registry.weights_file(official, other)[1].endswith("; not the official release)")
    with pytest.raises(InputError, match=r"a folder; give the checkpoint file"):
        registry.weights_file(official, tmp_path)
    with pytest.raises(InputError, match="deconv: takes no weights"):
        load("deconv", weights=other)
    from eval.report import write_markdown

    write_markdown(tmp_path / "results.md", [{"method": "gfpgan-1.4", "n": 1, "status": "ok"}], [], {},
                   {"gfpgan-1.4": registry.weights_file(official, other)[1]})
    assert f"Weights: {other} (sha256 " in (tmp_path / "results.md").read_text()


# ---------------------------------------------------------------- external networks, random weights

def test_gfpgan_full_path(tmp_path, face):
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": GFPGAN().state_dict()}, path)  # the official files' layout
    method = load("gfpgan-1.4", weights=path)
    check_restored(method, face)
    same = load("gfpgan-1.3", weights=path)  # v1.3 and v1.4 share the architecture
    assert same.info.name == "gfpgan-1.3" and same.size == 512
    assert all(torch.equal(a, b) for a, b in zip(method.net.state_dict().values(), same.net.state_dict().values()))
    renamed = path.rename(tmp_path / "gfpgan.bin")  # a checkpoint is read by its content, not its name
    assert all(torch.equal(a, b) for a, b in zip(method.net.state_dict().values(),
                                                 load("gfpgan-1.4", weights=renamed).net.state_dict().values()))


def test_codeformer_full_path_and_fidelity(tmp_path, face):
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    from baselines.facenets import is_grey

    torch.manual_seed(0)
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": CodeFormer().state_dict()}, path)
    faithful_method = load("codeformer", weights=path, fidelity=1.0)
    faithful = check_restored(faithful_method, face)
    # the weight reaches the network: 0 (the codebook alone) restores otherwise than 1
    assert np.abs(check_restored(load("codeformer", weights=path, fidelity=0.0), face).astype(int) - faithful).mean() > 5
    grey = np.repeat(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert is_grey(faithful_method.restore(grey), threshold=1.0)  # the official finish
    with pytest.raises(InputError, match="fidelity"):
        load("codeformer", weights=path, fidelity=1.5)


def test_restoreformer_full_path(tmp_path, face):
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    path = tmp_path / "RestoreFormer.pth"
    torch.save({"params": RestoreFormer().state_dict()}, path)
    method = load("restoreformer", weights=path)
    method.size = 128  # fully convolutional: a smaller working size keeps the test fast
    check_restored(method, face)


def lightning_checkpoint(model: RestoreFormerPP) -> dict:
    """The layout of the official RestoreFormer++.ckpt: a Lightning file whose state_dict holds the
    network under 'vqvae.' beside training-only entries."""
    state = {f"vqvae.{k}": v for k, v in model.state_dict().items()}
    state["vqvae.quantize.utility_counter"] = torch.zeros(1024)
    state["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)
    return {"epoch": 109, "global_step": 1, "state_dict": state}


def test_restoreformer_pp_full_path(tmp_path, face):
    torch.manual_seed(0)
    model = RestoreFormerPP()
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save(lightning_checkpoint(model), path)
    method = load("restoreformer++", weights=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), method.net.state_dict().values()))
    method.size = 128
    check_restored(method, face)


def _save_with_lightning_callback(obj: dict, path, monkeypatch, module: str, name: str) -> None:
    """torch.save ``obj`` with its 'callbacks' keyed by a class pickled as ``module.name``, as
    Lightning 1.x writes them; the class exists only while saving (Lightning is not installed)."""
    import sys
    import types

    cls = type(name, (), {"__module__": module})
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    setattr(sys.modules[module], name, cls)
    torch.save({**obj, "callbacks": {cls: {"best_model_score": torch.tensor(0.12), "best_model_path": "x.ckpt"}},
                "pytorch-lightning_version": "1.0.8"}, path)
    for i in range(1, len(parts) + 1):
        monkeypatch.delitem(sys.modules, ".".join(parts[:i]))


def test_restoreformer_pp_reads_a_lightning_file_with_its_callback_class(tmp_path, monkeypatch):
    """The release's Lightning callback class is the one global allowed (as an inert stand-in);
    any other global is still refused, and no Lightning code runs."""
    from baselines.restoreformer_pp import load_checkpoint

    torch.manual_seed(0)
    model = RestoreFormerPP()
    path = tmp_path / "RestoreFormer++.ckpt"
    _save_with_lightning_callback(lightning_checkpoint(model), path, monkeypatch,
                                  "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    with pytest.raises(Exception, match="ModelCheckpoint"):  # what plain weights_only loading does
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    other = tmp_path / "other.ckpt"
    _save_with_lightning_callback(lightning_checkpoint(model), other, monkeypatch,
                                  "pytorch_lightning.callbacks.early_stopping", "EarlyStopping")
    with pytest.raises(InputError, match="cannot read the checkpoint safely.*EarlyStopping"):
        load_checkpoint(other)


def test_loading_errors_name_the_keys(tmp_path):
    model = RestoreFormerPP()
    state = lightning_checkpoint(model)
    del state["state_dict"]["vqvae.decoder.conv_out.weight"]
    state["state_dict"]["vqvae.decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save(state, path)
    with pytest.raises(InputError, match=r"missing keys: decoder\.conv_out\.weight; unexpected keys: "
                                         r"decoder\.extra\.weight"):
        load("restoreformer++", weights=path)
    state = lightning_checkpoint(model)
    state["state_dict"]["vqvae.decoder.conv_out.bias"] = torch.zeros(7)
    torch.save(state, path)
    with pytest.raises(InputError, match=r"size mismatch for decoder\.conv_out\.bias"):
        load("restoreformer++", weights=path)
    from spandrel.architectures.GFPGAN import GFPGAN

    gfpgan = GFPGAN().state_dict()
    key = next(k for k in gfpgan if k.startswith("toRGB") and k.endswith("bias"))
    gfpgan[key] = torch.zeros(7)
    torch.save({"params_ema": gfpgan}, path)
    with pytest.raises(InputError, match=f"weights do not fit GFPGAN.*size mismatch for {re.escape(key)}"):
        load("gfpgan-1.4", weights=path)
    # the names right but tensors of no usable shape: spandrel reads the architecture from them
    from spandrel.architectures.RestoreFormer import RestoreFormer

    flat = {k: torch.zeros(3) for k in RestoreFormer().state_dict()}
    torch.save(flat, path)
    with pytest.raises(InputError, match=r"RestoreFormer\+\+.ckpt: (not a valid|weights do not fit) RestoreFormer"):
        load("restoreformer", weights=path)


def test_codeformer_keeps_a_grey_face_grey(face):
    from baselines.facenets import codeformer_finish, is_grey

    grey = np.repeat(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert is_grey(grey) and not is_grey(face)
    colourful = face[:, ::-1].copy()  # a "restored" face with colour
    out = codeformer_finish(colourful, grey)
    assert out.dtype == np.uint8 and is_grey(out, threshold=1.0)
    assert np.allclose(out.reshape(-1, 3).mean(0), grey.reshape(-1, 3).mean(0), atol=1)
    assert np.allclose(out.reshape(-1, 3).std(0), grey.reshape(-1, 3).std(0), atol=1)
    assert np.corrcoef(out[..., 0].ravel(), cv2.cvtColor(colourful, cv2.COLOR_RGB2GRAY).ravel())[0, 1] > 0.99
    assert np.array_equal(codeformer_finish(colourful, face), colourful)  # colour input: untouched


def test_restoreformer_pp_refuses_foreign_or_mismatched_files(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"model.weight": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="not a RestoreFormer\\+\\+ checkpoint"):
        load("restoreformer++", weights=bad)
    small = RestoreFormerPP(RestoreFormerPPConfig(channels=32, multipliers=(1, 2), resolution=32))
    torch.save(lightning_checkpoint(small), bad)
    with pytest.raises(InputError, match="do not fit RestoreFormer\\+\\+"):
        load("restoreformer++", weights=bad)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot read the checkpoint safely"):
        load("restoreformer++", weights=tmp_path / "junk.ckpt")
    with pytest.raises(InputError, match="not found"):
        load("restoreformer++", weights=tmp_path / "absent.ckpt")
    torch.save({"state_dict": {"vqvae.encoder.conv_in.weight": 3}}, bad)  # names right, values not weights
    with pytest.raises(InputError, match=r"bad.ckpt: not a RestoreFormer\+\+ checkpoint \(vqvae.encoder.conv_in.weight "
                                         r"holds a int, not weights\)"):
        load("restoreformer++", weights=bad)


def test_a_checkpoint_of_the_right_keys_but_no_weights_is_refused(tmp_path):
    from spandrel.architectures.RestoreFormer import RestoreFormer

    path = tmp_path / "RestoreFormer.pth"
    torch.save({"params": {k: 3 for k in RestoreFormer().state_dict()}}, path)
    with pytest.raises(InputError, match=r"RestoreFormer.pth: not a valid RestoreFormer \(CVPR 2022\) checkpoint "
                                         r"\(AttributeError"):
        load("restoreformer", weights=path)


def test_spandrel_refuses_the_wrong_architecture(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"params_ema": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, path)
    with pytest.raises(InputError, match="not a GFPGAN v1.4"):
        load("gfpgan-1.4", weights=path)


def test_restoreformer_pp_matches_an_independent_implementation():
    """Our network with RestoreFormer's settings (8 heads, no extra scale) is spandrel's
    RestoreFormer: the same weights must load strictly and give the same output."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    kw = dict(ch=32, ch_mult=(1, 2, 2), attn_resolutions=(16,), resolution=64, head_size=8)
    theirs = RestoreFormer(**kw).eval()
    ours = RestoreFormerPP(RestoreFormerPPConfig(channels=32, multipliers=(1, 2, 2), resolution=64,
                                                 heads=8, extra_scales=0)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x)[0], atol=1e-4)  # float rounding only


def test_restoreformer_pp_has_the_release_size():
    """The official RestoreFormer++.ckpt is 294,028,815 bytes; its float32 weights must be nearly all of it."""
    n = sum(p.numel() for p in RestoreFormerPP().parameters())
    assert 0.99 < n * 4 / 294_028_815 < 1.0
    keys = RestoreFormerPP().state_dict()
    assert "decoder.up.4.attn.2.q.weight" in keys and "encoder.down.5.attn.1.proj_out.weight" in keys


def test_injected_noise_is_seeded_and_leaves_the_global_generator_alone(face):
    """GFPGAN adds random noise inside the network, as officially run: each restore draws it from a
    fixed seed, so results repeat, and the caller's random stream is untouched."""
    from baselines.facenets import FaceNetMethod
    from baselines.registry import info

    def method(noise: float) -> FaceNetMethod:
        m = FaceNetMethod(info("gfpgan-1.4"), torch.nn.Identity(),
                          lambda net, x: net(x) + noise * torch.randn_like(x), torch.device("cpu"))
        m.size = 64
        return m

    noisy = method(0.2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = noisy.restore(face)
    assert torch.equal(torch.rand(1), before)  # the caller's stream as it was
    torch.manual_seed(999)  # whatever the caller's seed, the same noise
    assert np.array_equal(noisy.restore(face), a)
    assert not np.array_equal(a, method(0.0).restore(face))  # the noise is really there


def test_face_networks_read_and_give_rgb_in_minus_one_to_one(face):
    """As their official inference runs them: RGB (not OpenCV's BGR) scaled to [-1, 1], and the
    output read back the same way, so a network that changes nothing gives the face back."""
    from baselines.facenets import FaceNetMethod
    from baselines.registry import info

    seen = []
    method = FaceNetMethod(info("gfpgan-1.4"), torch.nn.Identity(), lambda net, x: seen.append(x) or net(x),
                           torch.device("cpu"))
    method.size = face.shape[0]
    red = np.zeros_like(face)
    red[..., 0] = 255
    assert np.array_equal(method.restore(red), red)
    assert torch.equal(seen[0][0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert np.abs(method.restore(face).astype(int) - face).max() <= 1


# ---------------------------------------------------------------- classical and SMFD

def test_blurry_is_the_input(face):
    out = load("blurry").restore(face)
    assert np.array_equal(out, face) and out is not face


def test_deconvolution_sharpens_a_gaussian_blur(face):
    blurred = cv2.GaussianBlur(face, (0, 0), 2.0)
    out = load("deconv").restore(blurred)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert metrics.psnr(out, face) > metrics.psnr(blurred, face) + 0.5


def test_smfd_methods_wrap_the_restorer(random_weights, face):
    from smfd.restorer import Restorer

    # PyTorch: the wrapper is under test, not the engine (an OpenVINO conversion of these random
    # networks took a minute; `smfd eval --weights smfd=DIR` loads by weights in test_eval)
    restorer = Restorer.from_pretrained(random_weights, device="cpu", engine="pytorch")
    generated = load("smfd", restorer=restorer)
    given = load("smfd-gt-mask", restorer=restorer)
    mask = np.zeros(face.shape[:2], np.uint8)  # not the generated mask, so the wrapper must pass it on
    assert np.array_equal(generated.restore(face), restorer.restore(face))
    assert np.array_equal(given.restore(face, mask), restorer.restore(face, mask))
    assert not np.array_equal(given.restore(face, mask), restorer.restore(face))
    with pytest.raises(InputError, match="needs a ground-truth"):
        given.restore(face)
    with pytest.raises(InputError, match="model weights not found"):
        load("smfd", weights=random_weights / "absent")


def test_package_reexports_the_interface():
    assert baselines.load is load and issubclass(baselines.WeightsMissing, InputError)
    assert "resized to the method's native size" in baselines.PROTOCOL


def test_codeformer_loads_without_a_deprecation_warning(monkeypatch):
    """spandrel-extra-arches' CodeFormer module calls torch.jit.script, deprecated: its FutureWarning
    would be printed above every first CodeFormer error or result."""
    import sys
    import warnings

    from baselines.facenets import _spandrel_arch

    for name in [m for m in sys.modules if m.startswith("spandrel_extra_arches")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a new process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert type(_spandrel_arch("codeformer")).__name__ == "CodeFormerArch"
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
