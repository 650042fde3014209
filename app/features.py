"""Layer-by-layer feature maps of both networks (thesis figures 4.5 and 4.6).

Forward hooks record every stage's output for one face. They go on a private copy of the
network: hooks on the shared model would also catch other users' requests running meanwhile.
A map with 3 channels is shown as RGB (min-max scaled when it is far from 0..1), 5 channels
(the mask's groups) by argmax in the group colours, 1 channel as is; any other number of channels
by its first channel (as the thesis does) or by the mean over channels.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from smfd import labels
from smfd.models import mask_input
from smfd.restorer import Restorer
from smfd.runtime import torch_threads

from .render import enlarge, heatmap, normalise

MODES = ("first channel", "channel mean")


def _stages(net, branches: list[tuple[str, object]]) -> list[tuple[str, torch.nn.Module]]:
    stages = []
    for prefix, encoder in branches:
        stages += [(f"{prefix} level {i + 1}", level) for i, level in enumerate(encoder.levels)]
    for i, (merge, block) in enumerate(zip(net.decoder.merges, net.decoder.blocks)):
        stages += [(f"decoder {i + 1}: attention upsample + skip", merge), (f"decoder {i + 1}: RDC", block)]
    stages += [("CBAM", net.decoder.attention), ("final RDC", net.decoder.refine), ("output head", net.out)]
    return stages


@torch.no_grad()
def capture(net: torch.nn.Module, stages, *inputs) -> list[tuple[str, np.ndarray]]:
    """Run ``net(*inputs)`` and return (stage, CxHxW float array) for every stage, in order."""
    seen: dict[str, np.ndarray] = {}

    def keep(name):
        def hook(_module, _inputs, output) -> None:  # returning a value would replace the output
            seen.setdefault(name, output[0].float().cpu().numpy())
        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in stages]
    try:
        output = net(*inputs)
    finally:
        for h in handles:
            h.remove()
    maps = [(name, seen[name]) for name, _ in stages if name in seen]
    return maps + [("network output", output[0].float().cpu().numpy())]


def mask_generator_maps(restorer: Restorer, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    net = copy.deepcopy(restorer.mask_model)
    x = restorer.work_tensor(image)
    x = mask_input(net.config, x)
    maps = capture(net, _stages(net, [("encoder", net.encoder)]), x)
    return [("input (grayscale)" if x.shape[1] == 1 else "input", x[0].cpu().numpy())] + maps


def smfd_maps(restorer: Restorer, image: np.ndarray, mask: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    """The maps of one pass with the inputs a restoration gives it: ``mask`` as given, else the
    generator's (its probabilities, where the network takes them)."""
    net = copy.deepcopy(restorer.deblur_model)
    with torch_threads(restorer.engine.torch_threads):
        x, m, _ = restorer.deblur_inputs(image, mask)
    branches = [("image encoder", net.image_encoder)]
    if net.mask_encoder is not None:
        branches.append(("mask encoder", net.mask_encoder))
    stages = _stages(net, branches) + [("post-processing", net.post)]
    maps = capture(net, stages, x, m)
    return [("input image", x[0].cpu().numpy()), ("input mask", m[0].cpu().numpy())] + maps


def picture(fmap: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    """A CxHxW map as an RGB picture and how it was made."""
    c = fmap.shape[0]
    if c == 3:
        rgb = fmap.transpose(1, 2, 0)
        lo, hi = np.percentile(rgb, [1, 99])
        if lo >= -0.1 and hi <= 1.1 and hi - lo > 0.3:  # an image: shown clipped, as the restorer does
            out, how = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), "RGB"
        else:  # e.g. a small residual correction around 0: stretch it to be seen
            out, how = (normalise(rgb) * 255).round().astype(np.uint8), "RGB, scaled"
    elif c == 5:
        out, how = labels.colorize(fmap.argmax(0)), "argmax of 5"
    elif c == 1:
        out, how = heatmap(fmap[0]), "1 channel"
    elif mode == "channel mean":
        out, how = heatmap(fmap.mean(0)), "channel mean"
    else:
        out, how = heatmap(fmap[0]), "channel 1"
    return enlarge(out), how


def gallery(maps: list[tuple[str, np.ndarray]], mode: str) -> list[tuple[np.ndarray, str]]:
    items = []
    for name, fmap in maps:
        image, how = picture(fmap, mode)
        items.append((image, f"{name}: {fmap.shape[0]} ch, {fmap.shape[2]}x{fmap.shape[1]}, {how}"))
    return items
