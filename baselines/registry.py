"""Every restoration method the lab compares, behind one interface.

``methods()`` lists them (licence, official weights, native resolution); ``load(name)`` returns a
:class:`Method` whose ``restore(image, mask=None)`` maps an RGB uint8 face crop to one of the same
size. Loading never downloads: a missing weights file raises :class:`WeightsMissing`, whose
message says how to get it.

Zero-shot protocol for the face-prior networks (GFPGAN, CodeFormer, RestoreFormer(++)): an aligned
face crop is resized to the network's native size (bilinear up, as their official aligned-input
paths do; area averaging down, for crops above it), restored, and resized back (area averaging
down, bilinear up). No face detection for aligned inputs.
"""

from __future__ import annotations

from pathlib import Path

from smfd.errors import InputError
from smfd.paths import sha256_of

from . import weights as _weights
from .interface import Method, MethodInfo, WeightsDamaged, WeightsMissing

PROTOCOL = ("zero-shot: aligned faces are resized to the method's native size and back (bilinear up, "
            "area averaging down); no face detection for aligned inputs")


_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
# Code licence of the repository; the weights carry the terms of what they were built from.
_GFPGAN_LICENCE = ("Apache-2.0 code, with StyleGAN2 parts (NVIDIA Source Code License-NC) and DFDNet parts "
                   "(CC BY-NC-SA 4.0) under non-commercial terms")
_GFPGAN_NOTES = ("weights trained on FFHQ (CC BY-NC-SA 4.0 data): not cleared for commercial use; the 'clean' "
                 "architecture, no compiled StyleGAN2 ops")
_FFHQ = "weights trained on FFHQ (CC BY-NC-SA 4.0 data): not cleared for commercial use"

_METHODS = (
    MethodInfo("gfpgan-1.3", "GFPGAN v1.3 (CVPR 2021)", _GFPGAN_LICENCE, False, 512,
               f"{_GFPGAN}/v1.3.0/GFPGANv1.3.pth",
               "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70", True, False,
               _GFPGAN_NOTES, "GFPGANv1.3.pth"),
    MethodInfo("gfpgan-1.4", "GFPGAN v1.4 (CVPR 2021)", _GFPGAN_LICENCE, False, 512,
               f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth",
               "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", True, False,
               _GFPGAN_NOTES, "GFPGANv1.4.pth"),
    MethodInfo("codeformer", "CodeFormer (NeurIPS 2022)", "S-Lab License 1.0 (non-commercial)", False, 512,
               "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
               "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7", True, False,
               "fidelity weight w (default 0.5: the official default; 0 = quality, 1 = fidelity); a grey "
               "input gives a grey result, as in the official inference; research and non-commercial use "
               "only", "codeformer.pth"),
    MethodInfo("restoreformer", "RestoreFormer (CVPR 2022)", "Apache-2.0 (code)", False, 512,
               f"{_GFPGAN}/v1.3.4/RestoreFormer.pth",
               "07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0", True, False,
               f"the release hosted by the GFPGAN project; {_FFHQ}", "RestoreFormer.pth"),
    MethodInfo("restoreformer++", "RestoreFormer++ (TPAMI 2023)", "Apache-2.0 (code)", False, 512,
               "https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/"
               "RestoreFormer%2B%2B.ckpt",
               None, True, False,
               f"network written here (no maintained package covers it); {_FFHQ}; no published SHA-256 "
               "could be found, so the download is not pinned and its computed digest is printed",
               "RestoreFormer++.ckpt"),
    MethodInfo("deconv", "Richardson-Lucy deconvolution", "BSD-3-Clause (scikit-image)", True, None,
               None, None, False, False,
               "20 iterations per channel with a fixed isotropic Gaussian PSF of sigma 2.0 px per "
               "256 px of image width (about the geometric middle of the pipeline's Gaussian blur widths at "
               "256x256, 1.3-3.3 px); "
               "not a blind estimate"),
    MethodInfo("blurry", "Blurry input (no restoration)", "-", True, None, None, None, False, False,
               "the input itself: the floor every method should beat"),
    MethodInfo("smfd", "SMFD-UNet, generated masks", "MIT (code)", False, 256, None, None, True, False,
               "the mask generator of the same weights folder makes the mask; weights trained on CelebAMask-HQ "
               "(non-commercial research and education only)"),
    MethodInfo("smfd-gt-mask", "SMFD-UNet, ground-truth masks", "MIT (code)", False, 256, None, None, True,
               True, "the given 5-group mask guides the restoration; weights trained on CelebAMask-HQ "
               "(non-commercial research and education only)"),
)
_BY_NAME = {m.name: m for m in _METHODS}


def methods() -> list[MethodInfo]:
    return list(_METHODS)


def info(name: str) -> MethodInfo:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(f"unknown method {name!r} (choose from {', '.join(_BY_NAME)})") from None


def downloadable(name: str) -> MethodInfo:
    """The method, refused with the reason when it has no official weights to fetch."""
    m = info(name)
    if not m.url:
        raise InputError(f"{name}: nothing to download ("
                         + ("uses the SMFD weights folder" if m.name.startswith("smfd") else "needs no weights")
                         + ")")
    return m


def download(name: str, force: bool = False) -> Path:
    """Fetch a method's official weights into the cache, verifying the SHA-256 where pinned, and
    where nothing is pinned that the file loads as the method's network."""
    m = downloadable(name)

    def loads(path: Path) -> None:
        from .facenets import load_facenet

        load_facenet(m, path)

    return _weights.download(m.url, m.cached_path(), m.sha256, force, verify=None if m.sha256 else loads)


def weights_file(m: MethodInfo, weights: str | Path | None) -> tuple[Path, str]:
    """The checkpoint to load, and what it is (for the results): ``weights`` if given, else the
    cached official file. Both are known by their SHA-256: a cached file that is not the official
    one is refused, and so is a given file that is another method's official release."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"{path}: weights file for {m.name} not found"
                             + (" (a folder; give the checkpoint file)" if path.is_dir() else ""))
        digest = sha256_of(path)
        other = next((o for o in _METHODS if o.sha256 == digest and o.name != m.name), None)
        if other is not None:
            raise InputError(f"{path}: is the official {other.filename} of {other.title}, not weights of {m.title}")
        kind = ("the official release" if digest == m.sha256 else
                "not the official release" if m.sha256 else "no official digest to compare with")
        return path, f"{path} (sha256 {digest[:16]}...; {kind})"
    path = m.cached_path()
    if not path.is_file():
        raise WeightsMissing(
            f"{m.name}: weights not found at {path}; on a machine with internet run "
            f"'smfd baselines download {m.name}' (or pass --weights {m.name}=PATH to the official {m.filename})")
    digest, expected = sha256_of(path), m.expected_sha256()
    if expected is not None and digest != expected:
        which = "the official file" if m.sha256 else "the file downloaded (its SHA-256 was recorded then)"
        raise WeightsDamaged(
            f"{m.name}: {path} is not {which}: its SHA-256 differs, damaged or cut short; on a "
            f"machine with internet run 'smfd baselines download {m.name} --force'")
    return path, f"the official {m.filename} (sha256 {digest[:16]}...)" if m.sha256 else \
        f"{m.filename} from {m.url} (sha256 {digest[:16]}...; no official digest to compare with)"


def load(name: str, weights: str | Path | None = None, device: str = "cpu", restorer=None, *,
         fidelity: float = 0.5, download_missing: bool = False) -> Method:
    """Build a ready-to-run method.

    ``weights``: a checkpoint file for the external networks (default: the cached official file),
    a folder with the SMFD weights for ``smfd``/``smfd-gt-mask`` (default: the shipped ones).
    ``restorer``: an already loaded :class:`smfd.Restorer` for the SMFD methods.
    ``fidelity``: CodeFormer's w. ``download_missing``: fetch absent official weights first.
    """
    m = info(name)
    if weights is not None and not m.needs_weights:
        raise InputError(f"{name}: takes no weights ({m.title})")
    if m.name in ("blurry", "deconv"):
        from .classical import Blurry, Deconvolution

        return Blurry(m) if m.name == "blurry" else Deconvolution(m)
    if m.name.startswith("smfd"):
        from .smfd_methods import SMFDMethod

        return SMFDMethod(m, weights, device, restorer)
    from .facenets import load_facenet

    try:
        path, described = weights_file(m, weights)  # the cached file hashed once, when it is there
    except WeightsMissing:  # absent, or damaged: fetched (again) where asked
        if not download_missing or weights is not None:
            raise
        download(m.name, force=True)  # known not to be the file wanted: no second look at it
        path, described = weights_file(m, weights)
    method = load_facenet(m, path, device, fidelity)
    method.weights = described + (f"; fidelity weight w = {fidelity}" if m.name == "codeformer" else "")
    return method
