"""RestoreFormer++ (Wang et al., TPAMI 2023), written here because no maintained package loads it.

The network is a VQ autoencoder whose decoder cross-attends to the encoder's features: at 16x16
the decoder's queries meet keys/values from the degraded face's encoder (multi-head attention),
and RestoreFormer++ adds a second such scale at 32x32 ("multi-scale"). Module names follow the
official release so that its checkpoint loads with every key matched (``strict=True``).

The official ``RestoreFormer++.ckpt`` is a PyTorch Lightning file: the network's weights sit under
the ``vqvae.`` prefix of its ``state_dict``, beside training-only entries (losses, discriminators),
which are dropped. Inputs and outputs are RGB in [-1, 1] at 512x512.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smfd.errors import InputError, first_line

PREFIX = "vqvae."
# Entries of the network's own prefix that are training statistics, not parameters: the
# codebook-usage counter kept while training the quantiser.
TRAINING_ONLY = ("quantize.utility_counter",)


@dataclass(frozen=True)
class RestoreFormerPPConfig:
    channels: int = 64
    multipliers: tuple[int, ...] = (1, 2, 2, 4, 4, 8)
    res_blocks: int = 2
    codebook_size: int = 1024
    code_dim: int = 256
    latent_channels: int = 256
    heads: int = 4
    resolution: int = 512
    attention_resolutions: tuple[int, ...] = (16,)  # encoder; the decoder adds 32 (multi-scale)
    extra_scales: int = 1


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class Attention(nn.Module):
    """Multi-head attention over all positions; with ``context`` the queries come from it
    (the degraded face's features) and keys/values from ``x``."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm1, self.norm2 = _norm(channels), _norm(channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        kv = self.norm1(x)
        query = kv if context is None else self.norm2(context)

        def split(t: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, heads, h*w, c/heads)
            return t.reshape(b, self.heads, c // self.heads, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(split(self.q(query)), split(self.k(kv)), split(self.v(kv)))
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Level(nn.Module):
    """One resolution: residual blocks, each optionally followed by attention, then a resampler."""

    def __init__(self, cin: int, cout: int, blocks: int, attention: bool, heads: int):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout) for i in range(blocks))
        self.attn = nn.ModuleList(Attention(cout, heads) for _ in range(blocks if attention else 0))


class Resample(nn.Module):
    def __init__(self, channels: int, down: bool):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(channels, channels, 3, stride=2 if down else 1, padding=0 if down else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:  # asymmetric padding, as the original
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Middle(nn.Module):
    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.attn_1 = Attention(channels, heads)
        self.block_2 = ResBlock(channels, channels)


class Encoder(nn.Module):
    def __init__(self, c: RestoreFormerPPConfig):
        super().__init__()
        chans = [c.channels * m for m in c.multipliers]
        self.conv_in = nn.Conv2d(3, c.channels, 3, padding=1)
        self.down = nn.ModuleList()
        res, cin = c.resolution, c.channels
        for i, cout in enumerate(chans):
            level = Level(cin, cout, c.res_blocks, res in c.attention_resolutions, c.heads)
            if i < len(chans) - 1:
                level.downsample = Resample(cout, down=True)
                res //= 2
            self.down.append(level)
            cin = cout
        self.mid = Middle(cin, c.heads)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, c.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The latent, and the features the decoder attends to, keyed by level (-1: the middle)."""
        features = {}
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                features[i] = h
                h = level.downsample(h)
        h = self.mid.block_1(h)
        features[len(self.down) - 1] = h  # the deepest level's context is the first middle block's output
        h = self.mid.block_2(self.mid.attn_1(h))
        features[-1] = h
        return self.conv_out(F.silu(self.norm_out(h))), features


class Decoder(nn.Module):
    def __init__(self, c: RestoreFormerPPConfig):
        super().__init__()
        chans = [c.channels * m for m in c.multipliers]
        attention = set(c.attention_resolutions)
        for _ in range(c.extra_scales):  # multi-scale: also attend at twice the coarsest resolution
            attention.add(max(attention) * 2)
        res = c.resolution // 2 ** (len(chans) - 1)
        cin = chans[-1]
        self.conv_in = nn.Conv2d(c.latent_channels, cin, 3, padding=1)
        self.mid = Middle(cin, c.heads)
        levels = []
        for i in reversed(range(len(chans))):
            level = Level(cin, chans[i], c.res_blocks + 1, res in attention, c.heads)
            if i > 0:
                level.upsample = Resample(chans[i], down=False)
                res *= 2
            levels.insert(0, level)
            cin = chans[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h), features[-1]))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h, features[i])
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Replace every latent vector by its nearest codebook entry (Euclidean)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        return codes[dist.argmin(1)].reshape(b, h, w, c).permute(0, 3, 1, 2)


class RestoreFormerPP(nn.Module):
    def __init__(self, config: RestoreFormerPPConfig = RestoreFormerPPConfig()):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = Quantizer(config.codebook_size, config.code_dim)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.code_dim, config.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1], Nx3x512x512 -> RGB in [-1, 1]."""
        z, features = self.encoder(x)
        codes = self.quantize(self.quant_conv(z))
        return self.decoder(self.post_quant_conv(codes), features)


def network_state(checkpoint: dict, source: str | Path) -> dict[str, torch.Tensor]:
    """The network's weights out of an official checkpoint: the ``vqvae.`` part of its
    ``state_dict``, without the training-only entries."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(PREFIX) for k in state):
        raise InputError(f"{source}: not a RestoreFormer++ checkpoint (no '{PREFIX}*' weights in its state_dict)")
    net = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    bad = next((k for k, v in net.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise InputError(f"{source}: not a RestoreFormer++ checkpoint ({PREFIX}{bad} holds a "
                         f"{type(net[bad]).__name__}, not weights)")
    return {k: v for k, v in net.items() if k not in TRAINING_ONLY}


class LightningCallbackName:
    """Stands in for a PyTorch Lightning callback class while the release checkpoint is unpickled.

    Lightning 1.x keys the callbacks' saved states by the callback's class, so the file names
    that class as a pickle global, which ``weights_only`` loading refuses. Here the name resolves
    to this inert class instead: it is only a dictionary key, and no Lightning code is imported
    or run. Only the names in :data:`LIGHTNING_GLOBALS` are allowed; any other global is refused.
    """


LIGHTNING_GLOBALS = [(LightningCallbackName, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")]


def load_checkpoint(path: str | Path) -> RestoreFormerPP:
    """Build the network and load an official checkpoint with every key matched (float32, eval)."""
    from .weights import load_error_details, state_dict_mismatch

    try:
        # weights_only: a checkpoint from the internet must not be able to run code when unpickled.
        with torch.serialization.safe_globals(LIGHTNING_GLOBALS):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or pickled objects beyond tensors and containers
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        reason = (f"it pickles {refused.group(1)}, which is not allowed" if refused
                  else f"{type(exc).__name__}: {first_line(exc)}")
        raise InputError(f"{path}: cannot read the checkpoint safely ({reason})") from None
    model = RestoreFormerPP()
    try:
        result = model.load_state_dict({k: v.float() for k, v in network_state(raw, path).items()}, strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise InputError(f"{path}: weights do not fit RestoreFormer++ ({load_error_details(exc)})") from None
    if result.missing_keys or result.unexpected_keys:
        raise InputError(f"{path}: weights do not fit RestoreFormer++ "
                         f"({state_dict_mismatch(result.missing_keys, result.unexpected_keys)})")
    return model.eval()
