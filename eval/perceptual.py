"""LPIPS (the ``lpips`` package, AlexNet v0.1) and FID (``pytorch-fid``'s Inception), as published.

Both need ImageNet-trained backbones that torch downloads into its hub cache on first use
(``$TORCH_HOME/hub/checkpoints``). Nothing is downloaded here: when a file is absent the metric is
"not available" (:class:`MetricUnavailable`, with the file and where to get it). LPIPS's own
linear heads ship inside the ``lpips`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from smfd.errors import MetricUnavailable

ALEXNET = ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
FID_INCEPTION = ("pt_inception-2015-12-05-6726825d.pth",
                 "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")


def hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _require(what: str, file: tuple[str, str]) -> None:
    path = hub_file(file[0])
    if not path.is_file():
        raise MetricUnavailable(f"its {what} weights {file[0]} are not in the torch hub cache",
                                f"download {file[1]} into {path.parent} on a machine with internet")


def _tensor(images: list[np.ndarray], device) -> torch.Tensor:
    """RGB uint8 HxWx3 list -> Nx3xHxW float in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(device)


class LPIPS:
    """Learned perceptual distance (lower = closer), AlexNet features, as the paper's v0.1."""

    def __init__(self, device="cpu"):
        _require("ImageNet AlexNet", ALEXNET)
        import lpips

        self.device = torch.device(device)
        self.net = lpips.LPIPS(net="alex", version="0.1", verbose=False).to(self.device).eval()

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.net(_tensor([a], self.device), _tensor([b], self.device), normalize=True).item())


class FID:
    """Fréchet Inception distance between two image sets (by default pool3 features, 2048-d).

    Reliable only with thousands of images: on a few hundred it is biased upwards and noisy, so
    compare numbers only over the same set of faces.
    """

    def __init__(self, device="cpu", batch: int = 16, dims: int = 2048):
        """``dims``: pytorch-fid's feature layer (64, 192, 768 or 2048, the standard)."""
        _require("Inception", FID_INCEPTION)
        from pytorch_fid.inception import InceptionV3

        self.device, self.batch = torch.device(device), batch
        self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).to(self.device).eval()

    @torch.no_grad()
    def features(self, images: list[np.ndarray]) -> np.ndarray:
        by_size: dict[tuple, list[np.ndarray]] = {}  # the network resizes each to 299 itself; a batch
        for image in images:                          # is one size (the statistics ignore the order)
            by_size.setdefault(image.shape, []).append(image)
        out = []
        for same in by_size.values():
            for i in range(0, len(same), self.batch):
                f = self.net(_tensor(same[i:i + self.batch], self.device))[0]
                # Layers below pool3 are spatial: average them, as pytorch-fid does.
                out.append(torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def __call__(self, images: list[np.ndarray], reference: list[np.ndarray]) -> float:
        from pytorch_fid.fid_score import calculate_frechet_distance

        if min(len(images), len(reference)) < 2:
            raise ValueError("FID needs at least two images per set")
        a, b = self.features(images), self.features(reference)
        return float(calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                                b.mean(0), np.cov(b, rowvar=False)))
