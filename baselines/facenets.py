"""The face-prior networks (GFPGAN, CodeFormer, RestoreFormer, RestoreFormer++) under the zero-shot
protocol of :mod:`baselines.registry`.

GFPGAN, CodeFormer and RestoreFormer load through spandrel / spandrel-extra-arches (no basicsr),
whose loader unpickles only tensors and containers; RestoreFormer++ uses the network in
:mod:`baselines.restoreformer_pp`. All four take and return RGB in [-1, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from smfd.errors import InputError, first_line
from smfd.images import check_rgb, resize_to
from smfd.runtime import pick_device

from .interface import Method, MethodInfo
from .weights import load_error_details

NOISE_SEED = 0  # GFPGAN injects random noise (as officially run); a fixed seed makes runs repeatable


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear up (the official aligned-input paths use it), area averaging down."""
    return resize_to(image, (width, height), upscale=cv2.INTER_LINEAR)


class FaceNetMethod(Method):
    """A network on [-1, 1] RGB at a fixed working size (by default its native one)."""

    def __init__(self, info: MethodInfo, net: torch.nn.Module, run: Callable, device: torch.device,
                 finish: Callable | None = None):
        self.info, self.net, self.run, self.device = info, net.eval().to(device), run, device
        self.finish = finish  # (restored, input) at the working size -> restored, as the method's own inference does
        # The working size: the native one. The RestoreFormers are fully convolutional and also run
        # at other multiples of 32 (the tests use that to stay fast); GFPGAN and CodeFormer need 512.
        self.size = info.native_size

    @torch.no_grad()
    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        h, w = check_rgb(image).shape[:2]
        x = torch.from_numpy(resize(image, self.size, self.size)).to(self.device)
        x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
        # manual_seed seeds every device: the GPU's generator is forked too, so that the caller's
        # random stream is left as it was
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(NOISE_SEED)
            y = self.run(self.net, x)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
        if self.finish is not None:
            y = self.finish(y, resize(image, self.size, self.size))
        return resize(y, w, h)


GREY_THRESHOLD = 10.0  # CodeFormer's: mean variance of the channel differences


def is_grey(image: np.ndarray, threshold: float = GREY_THRESHOLD) -> bool:
    """Whether an RGB image is grey in CodeFormer's sense: its channels differ by (almost) nothing."""
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    return float(np.mean([(r - g).var(), (g - b).var(), (b - r).var()])) <= threshold


def codeformer_finish(restored: np.ndarray, source: np.ndarray) -> np.ndarray:
    """CodeFormer's official inference on a grey face: the result is made grey (BT.601 luma) and each
    channel then takes the mean and spread of the input's, so a grey photo stays grey."""
    if not is_grey(source):
        return restored
    luma = restored.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    out = np.empty(restored.shape, np.float64)
    for c in range(3):
        ref = source[..., c].astype(np.float64)
        out[..., c] = (luma - luma.mean()) / (luma.std() + 1e-5) * ref.std() + ref.mean()
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _spandrel_arch(name: str):
    if name.startswith("gfpgan"):
        from spandrel.architectures.GFPGAN import GFPGANArch

        return GFPGANArch()
    if name == "restoreformer":
        from spandrel.architectures.RestoreFormer import RestoreFormerArch

        return RestoreFormerArch()
    with warnings.catch_warnings():  # its module scripts a function with torch.jit, which this torch
        # deprecates: a FutureWarning above every first CodeFormer load that tells the user nothing
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

    return CodeFormerArch()


def _load_spandrel(info: MethodInfo, path: Path) -> torch.nn.Module:
    from safetensors.torch import load_file
    from spandrel import canonicalize_state_dict

    arch = _spandrel_arch(info.name)
    try:
        # read by its content whatever its name (spandrel's own reader goes by the extension and
        # refused a checkpoint named .bin, or a download's .part file); weights_only: a file from
        # the internet must not run code when unpickled
        raw = load_file(str(path)) if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
        state = canonicalize_state_dict(raw)
    except Exception as exc:  # corrupt file, or pickled objects beyond tensors and containers
        raise InputError(f"{path}: cannot read the checkpoint safely ({type(exc).__name__}: "
                         f"{first_line(exc)})") from None
    if not arch.detect(state):
        raise InputError(f"{path}: not a {info.title} checkpoint (its keys do not match)")
    try:
        return arch.load(state).model
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit {info.title} ({load_error_details(exc)})") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, AssertionError) as exc:  # shapes read, non-tensors
        raise InputError(f"{path}: not a valid {info.title} checkpoint ({type(exc).__name__}: "
                         f"{first_line(exc)})") from None


def load_facenet(info: MethodInfo, path: Path, device: str = "cpu", fidelity: float = 0.5) -> FaceNetMethod:
    if info.name == "codeformer" and not 0.0 <= fidelity <= 1.0:  # before the weights are read
        raise InputError(f"CodeFormer's fidelity weight must lie in 0..1, got {fidelity}")
    dev = pick_device(device)
    if info.name == "restoreformer++":
        from .restoreformer_pp import load_checkpoint

        return FaceNetMethod(info, load_checkpoint(path), lambda net, x: net(x), dev)
    net = _load_spandrel(info, path)
    if info.name.startswith("gfpgan"):
        run = lambda net, x: net(x, return_rgb=False)[0]  # noqa: E731
    elif info.name == "codeformer":
        run = lambda net, x: net(x, weight=fidelity)[0]  # noqa: E731
        return FaceNetMethod(info, net, run, dev, finish=codeformer_finish)
    else:
        run = lambda net, x: net(x)[0]  # noqa: E731
    return FaceNetMethod(info, net, run, dev)
