"""The mask generator (thesis 3.4.4) and SMFD-UNet (3.4.5), each built from a frozen config.

A network only wires blocks together; every ablation of thesis table 4.3 is a config switch
(``ABLATIONS`` below; the table is cumulative, each row adds one thing to the row above).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import labels
from .blocks import CBAM, PostProcess, ResidualDenseBlock, UpsampleMerge


@dataclass(frozen=True)
class MaskNetConfig:
    in_channels: int = 1  # the thesis feeds the grayscale blurry face
    classes: int = 5  # 5 groups, or 19 CelebAMask-HQ classes
    encoder: tuple[int, ...] = (32, 64, 128, 224)
    decoder: tuple[int, ...] = (256, 128, 64)
    head: int = 32
    dense_layers: int = 1
    upsample: str = "pixelshuffle-attention"
    shuffle_kernel: int = 3  # kernel of the conv before PixelShuffle
    # Our addition (the thesis': 1.0, as `smfd eval --thesis-tables --budget thesis` trains it): the
    # mask generator looks at the face at this fraction of the input's resolution and upsamples its
    # logits back: masks are smooth, the input is blurry, and it is 4x cheaper.
    input_scale: float = 0.5

    kind = "mask"


@dataclass(frozen=True)
class SMFDConfig:
    image_channels: int = 3
    mask_channels: int = 5  # one-hot 5-group mask
    encoder: tuple[int, ...] = (32, 64, 128, 256)  # image branch
    mask_encoder: tuple[int, ...] = (16, 32, 64, 128)  # mask branch
    decoder: tuple[int, ...] = (256, 128, 64)
    head: int = 32
    dense_layers: int = 1
    use_mask: bool = True
    upsample: str = "pixelshuffle-attention"
    shuffle_kernel: int = 3
    post_process: bool = True
    contrast: float = 2.0
    brightness: float = 0.1
    # Our additions, off in the thesis' configuration. residual: predict a correction added to
    # the blurry input. match_input_mean: give the output the per-channel mean of the input --
    # blur, rescaling and zero-mean noise keep an image's mean colour, so the input's mean is the
    # target's, and the thesis' colour shift cannot arise.
    residual: bool = False
    match_input_mean: bool = False
    # soft_mask: a generated mask reaches the network as the mask generator's per-group
    # probabilities instead of the one-hot of their argmax, so an uncertain group (a mouth the
    # generator is unsure of) is not presented as certain. A given label map is always one-hot.
    soft_mask: bool = False
    # generated_parts: whether a generated mask's facial-parts group (eyes, brows, nose, mouth,
    # ears) reaches the network. False: its probability is added to face skin, so the network
    # restores the parts from the image alone; a given label map keeps its parts. The generator's
    # parts have the wrong shape often enough that the restoration follows them away from the
    # person (model card, *Identity*).
    generated_parts: bool = True

    kind = "deblur"


@dataclass(frozen=True)
class SegBaselineConfig:
    """UNet / UNet++ of segmentation_models_pytorch, the thesis' mask baselines (table 4.1):
    trained from scratch (no pretrained encoder) on the mask generator's data and recipe."""

    arch: str = "unet"  # "unet" or "unetplusplus"
    encoder: str = "resnet34"  # smp's default encoder
    in_channels: int = 1  # the grayscale blurry face, as the mask generator sees it
    classes: int = 5

    kind = "smp"

    def __post_init__(self):
        if self.arch not in SEG_BASELINES:
            raise ValueError(f"arch must be one of {', '.join(SEG_BASELINES)}, got {self.arch!r}")


SEG_BASELINES = {"unet": "Unet", "unetplusplus": "UnetPlusPlus"}  # arch -> smp class

# Thesis table 4.3, row by row: config overrides of SMFDConfig().
ABLATIONS = {
    "no-mask": {"use_mask": False, "upsample": "plain", "post_process": False},
    "plain-upsampling": {"upsample": "plain", "post_process": False},
    "attention-transpose": {"upsample": "transpose-attention", "post_process": False},
    "attention-pixelshuffle": {"post_process": False},
    "full": {},
}


def config_to_dict(config) -> dict:
    return {"kind": config.kind, **{k: list(v) if isinstance(v, tuple) else v
                                    for k, v in dataclasses.asdict(config).items()}}


def config_from_dict(data: dict):
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r} (expected one of {', '.join(NETWORKS)})")
    cls = NETWORKS[kind][0]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return with_overrides(cls(), data)


# Fields with a range beyond their type: (lowest, highest, whether the lowest is allowed); integer
# fields are at least 1 (counts, widths) unless named here.
FIELD_RANGES = {"input_scale": (0.0, 1.0, False), "contrast": (0.0, 100.0, False), "brightness": (-1.0, 1.0, True)}
# dense_layers 0: blocks of their 1x1 fusion and projection alone, no 3x3 convolution (an ablation)
INT_MINIMUM = {"dense_layers": 0}
ODD = ("shuffle_kernel",)  # "same" padding (k // 2) keeps the size only for an odd kernel


def check_override(name: str, kind: str, value) -> None:
    """A config field's new value (from JSON or --set) against the field's type: a bool for a switch,
    a positive integer for a count or width (a list of them for the levels), a finite number in
    the field's range, a string. A string for a switch would count as on; a negative width fails
    only deep inside torch."""
    def int_from(v, least: int = 1) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= least

    if kind == "bool":
        ok, rule = isinstance(value, bool), "true or false"
    elif kind == "int":
        least = INT_MINIMUM.get(name, 1)
        ok, rule = int_from(value, least), "a positive integer" if least == 1 else f"an integer of at least {least}"
        if name in ODD:
            ok, rule = ok and value % 2 == 1, "an odd positive integer"
    elif kind.startswith("tuple"):
        ok, rule = isinstance(value, (list, tuple)) and value and all(map(int_from, value)), \
            "a list of positive integers"
    elif kind == "float":
        low, high, low_ok = FIELD_RANGES.get(name, (-float("inf"), float("inf"), True))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (low <= value if low_ok else low < value) and value <= high
        rule = f"a number in {'[' if low_ok else '('}{low:g}, {high:g}]"
    else:
        ok, rule = isinstance(value, str), "a string"
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")


def with_overrides(config, overrides: dict):
    """``config`` with some fields replaced, each checked against its field's type
    (:func:`check_override`); lists (from JSON or --set) become tuples, as the configs are frozen
    and hashable. An unknown field is a TypeError naming it."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(config)}
    for name, value in overrides.items():
        if name not in kinds:
            raise TypeError(f"{type(config).__name__} has no field {name!r}")
        check_override(name, kinds[name], value)
    return dataclasses.replace(config, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


class Encoder(nn.Module):
    """len(channels) levels of RDC; max-pooling between levels. Returns every level's features."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], dense_layers: int):
        super().__init__()
        ins = (in_channels, *channels[:-1])
        self.levels = nn.ModuleList(ResidualDenseBlock(i, o, dense_layers) for i, o in zip(ins, channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, level in enumerate(self.levels):
            x = level(F.max_pool2d(x, 2) if i else x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """From the deepest features up: upsample-merge with each skip, then an RDC; then CBAM + RDC."""

    def __init__(self, deep_channels: int, skip_channels: tuple[int, ...], channels: tuple[int, ...],
                 head: int, dense_layers: int, upsample: str, shuffle_kernel: int = 3):
        super().__init__()
        if len(skip_channels) != len(channels):
            raise ValueError("the decoder needs one stage per encoder skip")
        self.merges, self.blocks = nn.ModuleList(), nn.ModuleList()
        for skip, out in zip(skip_channels, channels):
            merge = UpsampleMerge(deep_channels, skip, out, upsample, shuffle_kernel)
            self.merges.append(merge)
            self.blocks.append(ResidualDenseBlock(merge.out_channels, out, dense_layers))
            deep_channels = out
        self.attention = CBAM(deep_channels)
        self.refine = ResidualDenseBlock(deep_channels, head, dense_layers)

    def forward(self, deep: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = deep
        for merge, block, skip in zip(self.merges, self.blocks, skips):
            x = block(merge(x, skip))
        return self.refine(self.attention(x))


def size_multiple(levels: int) -> int:
    """What the sides of an encoder's input must be multiples of: one 2x pooling per level after the first."""
    return 2 ** (levels - 1)


def _check_size(x: torch.Tensor, levels: int) -> None:
    factor = size_multiple(levels)
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"the network's input height and width must be multiples of {factor}, "
                         f"got {tuple(x.shape[-2:])}")


class MaskNet(nn.Module):
    """Grayscale blurry face -> per-pixel class logits (softmax is applied by the caller/loss)."""

    def __init__(self, config: MaskNetConfig = MaskNetConfig()):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c.in_channels, c.encoder, c.dense_layers)
        self.decoder = Decoder(c.encoder[-1], tuple(reversed(c.encoder[:-1])), c.decoder,
                               c.head, c.dense_layers, c.upsample, c.shuffle_kernel)
        self.out = nn.Sequential(nn.Conv2d(c.head, c.head, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(c.head, c.classes, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps at every level, finest first, of an input at its resolution."""
        if self.config.input_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.config.input_scale, mode="area")
        _check_size(x, len(self.config.encoder))
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        *skips, deep = self.features(x)
        logits = self.out(self.decoder(deep, skips[::-1]))
        with _full_precision(x.device):
            logits = logits.float()
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def _full_precision(device: torch.device):
    """Autocast switched off (meta tensors, on which configs are tried out, have none to switch)."""
    return contextlib.nullcontext() if device.type == "meta" else torch.autocast(device.type, enabled=False)


class SMFDNet(nn.Module):
    """Blurry RGB + one-hot mask -> sharp RGB, fusing both encoders' features at every stage."""

    def __init__(self, config: SMFDConfig = SMFDConfig()):
        super().__init__()
        self.config = config
        c = config
        if c.use_mask and len(c.mask_encoder) != len(c.encoder):
            raise ValueError("image and mask encoders need the same number of levels")
        self.image_encoder = Encoder(c.image_channels, c.encoder, c.dense_layers)
        self.mask_encoder = Encoder(c.mask_channels, c.mask_encoder, c.dense_layers) if c.use_mask else None
        # without a mask, the (default) mask encoder's levels do not count
        fused = [i + m for i, m in zip(c.encoder, c.mask_encoder)] if c.use_mask else list(c.encoder)
        self.decoder = Decoder(fused[-1], tuple(reversed(fused[:-1])), c.decoder, c.head,
                               c.dense_layers, c.upsample, c.shuffle_kernel)
        self.out = nn.Sequential(nn.Conv2d(c.head, c.head, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(c.head, c.image_channels, 1))
        self.post = PostProcess(c.contrast, c.brightness) if c.post_process else nn.Identity()

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_size(image, len(self.config.encoder))
        features = self.image_encoder(image)
        if self.mask_encoder is not None:
            if mask is None:
                raise ValueError("this SMFD configuration needs a mask")
            features = [torch.cat(pair, 1) for pair in zip(features, self.mask_encoder(mask))]
        *skips, deep = features
        x = self.decoder(deep, skips[::-1])
        # The output head runs in float32 even under bf16 autocast: bf16 would quantise the
        # image to about one grey level.
        with _full_precision(image.device):
            y = self.post(self.out(x.float()))
            if self.config.residual:
                y = y + image.float()
            if self.config.match_input_mean:
                y = y - y.mean((2, 3), keepdim=True) + image.float().mean((2, 3), keepdim=True)
            return y


class SegBaseline(nn.Module):
    """An smp segmentation network behind the mask generator's interface: image -> class logits."""

    def __init__(self, config: SegBaselineConfig = SegBaselineConfig()):
        super().__init__()
        import segmentation_models_pytorch as smp  # heavy (timm); only these baselines need it

        self.config = config
        self.net = getattr(smp, SEG_BASELINES[config.arch])(
            encoder_name=config.encoder, encoder_weights=None, in_channels=config.in_channels,
            classes=config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, 6)  # five 2x downsamplings: multiples of 32
        return self.net(x).float()


# A config's ``kind`` -> (config class, network class): the one table checkpoints are rebuilt from.
NETWORKS = {"mask": (MaskNetConfig, MaskNet), "deblur": (SMFDConfig, SMFDNet), "smp": (SegBaselineConfig, SegBaseline)}


def build(config) -> nn.Module:
    return NETWORKS[config.kind][1](config)


def count_parameters(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    # Keras counts BatchNorm's running mean/var as non-trainable parameters: report the same way.
    return {"total": trainable + frozen + buffers, "trainable": trainable, "non_trainable": frozen + buffers}


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one forward pass on a size x size face (convolutions and matrix
    products, as torch's FLOP counter counts them; one MAC = two FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    config = model.config
    channels = getattr(config, "in_channels", getattr(config, "image_channels", 3))
    x = torch.zeros(1, channels, size, size)
    inputs = (x, torch.zeros(1, config.mask_channels, size, size)) if config.kind == "deblur" else (x,)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    model.train(was_training)
    return counter.get_total_flops() // 2


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Nx3xHxW RGB in [0, 1] -> Nx1xHxW luma (ITU-R BT.601 weights, as OpenCV)."""
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def mask_input(config, image: torch.Tensor) -> torch.Tensor:
    """RGB faces (Nx3xHxW in [0, 1]) as a segmentation network with this config reads them: grayscale
    for the mask generator (``in_channels`` 1), RGB otherwise."""
    return rgb_to_gray(image) if config.in_channels == 1 else image


def mask_probabilities(mask_model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Per-group probabilities (NxCxHxW, float32) of the mask generator for RGB faces in [0, 1]:
    the mean over each face and its mirror image (the groups are left-right symmetric), so the
    mask of a mirrored face is the mirrored mask."""
    x = mask_input(mask_model.config, image)
    n = len(x)
    p = mask_model(torch.cat([x, x.flip(-1)])).float().softmax(1)
    return (p[:n] + p[n:].flip(-1)) / 2


def mirrored_restoration(deblur_model: nn.Module, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SMFD-UNet's restoration (NxCxHxW, float32) of faces in [0, 1] with their masks: the mean over
    each face and its mirror image, as the mask is made, so a mirrored face gets the mirrored
    restoration (on the 122 validation faces: +0.03-0.05 dB and +0.0015-0.0017 SSIM, identity level)."""
    n = len(image)
    out = deblur_model(torch.cat([image, image.flip(-1)]), torch.cat([mask, mask.flip(-1)])).float()
    return (out[:n] + out[n:].flip(-1)) / 2


def generated_mask_input(config: SMFDConfig, probabilities: torch.Tensor) -> torch.Tensor:
    """A generated mask (NxCxHxW probabilities) as this SMFD-UNet takes it: the probabilities
    themselves for a ``soft_mask`` network, else the one-hot of their argmax; without
    ``generated_parts``, the facial-parts group is added to face skin."""
    mask = probabilities if config.soft_mask else one_hot_mask(probabilities.argmax(1), config.mask_channels)
    if config.generated_parts:
        return mask
    skin, parts = labels.GROUPS.index("face skin"), labels.GROUPS.index("facial parts")
    mask = mask.clone()
    mask[:, skin] += mask[:, parts]
    mask[:, parts] = 0
    return mask


def one_hot_mask(labels: torch.Tensor, classes: int = 5) -> torch.Tensor:
    """NxHxW integer labels (0..classes-1) -> NxCxHxW float one-hot."""
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"mask labels must lie in 0..{classes - 1}")
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
