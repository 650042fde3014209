"""The thesis' building blocks (section 3.4.3), one small module per concept."""

from __future__ import annotations

import torch
from torch import nn


class ResidualDenseBlock(nn.Module):
    """RDC: densely connected Conv-BN-ReLU layers, a 1x1 fusion of everything, plus a
    1x1-projected residual of the input, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, layers: int = 2, growth: int | None = None):
        super().__init__()
        growth = growth or out_channels
        self.dense = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels + i * growth, growth, 3, padding=1, bias=False),
                nn.BatchNorm2d(growth),
                nn.ReLU(inplace=True),
            )
            for i in range(layers)
        )
        self.fuse = nn.Conv2d(in_channels + layers * growth, out_channels, 1)
        self.project = nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.dense:
            features.append(layer(torch.cat(features, 1)))
        return self.act(self.fuse(torch.cat(features, 1)) + self.project(x))


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        peak = self.mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(stats))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 8, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class PixelShuffleUpsample(nn.Module):
    """Conv to C*r^2 channels, PixelShuffle(r), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * scale * scale, kernel_size,
                              padding=kernel_size // 2)
        self.shuffle = nn.PixelShuffle(scale)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class TransposeUpsample(nn.Module):
    """The ablation's alternative: a stride-2 transposed convolution, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


UPSAMPLE_MODES = ("plain", "transpose-attention", "pixelshuffle-attention")


class UpsampleMerge(nn.Module):
    """Upsample deep features and concatenate an encoder skip.

    ``pixelshuffle-attention`` is the thesis' attention upsample (PixelShuffle; CBAM on the skip);
    ``transpose-attention`` swaps PixelShuffle for a transposed conv; ``plain`` is nearest-neighbour
    upsampling with the raw skip (the ablation's "traditional upsampling").
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 mode: str = "pixelshuffle-attention", kernel_size: int = 3):
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
        if mode == "plain":
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.skip = nn.Identity()
            self.out_channels = in_channels + skip_channels
        else:
            if mode == "pixelshuffle-attention":
                self.up = PixelShuffleUpsample(in_channels, out_channels, kernel_size=kernel_size)
            else:
                self.up = TransposeUpsample(in_channels, out_channels)
            self.skip = CBAM(skip_channels)
            self.out_channels = out_channels + skip_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.up(x), self.skip(skip)], 1)


class PostProcess(nn.Module):
    """out = (out - mean(out)) * c + mean(out) + b, the mean taken per image."""

    def __init__(self, contrast: float = 2.0, brightness: float = 0.1):
        super().__init__()
        self.contrast, self.brightness = contrast, brightness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((1, 2, 3), keepdim=True)
        return (x - mean) * self.contrast + mean + self.brightness
