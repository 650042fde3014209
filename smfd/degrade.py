"""The thesis' randomised degradation pipeline (section 3.4.1).

A degradation is split in two steps so that every sample can be logged and replayed:

* ``sample_recipe(rng, options)`` draws a :class:`Recipe` -- a plain value holding every random
  choice, including the seed of its own noise;
* ``apply(image, recipe)`` turns a sharp uint8 RGB image into the degraded one, deterministically.

Blur kernels follow OpenCV's conventions (the thesis' tooling): a Gaussian kernel of odd size ``k``
has sigma ``0.3 * ((k - 1) / 2 - 1) + 0.8`` (what ``cv2.GaussianBlur`` uses for sigma 0) and a
motion kernel is a normalised line through the kernel centre.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

SEQUENCES = {"M": "M", "G>M": "GM", "M>G": "MG", "G>M>G": "GMG"}  # name -> operation letters
DIRECTIONS = ("horizontal", "vertical", "diagonal", "anti-diagonal")
THESIS_KERNEL_SIZES = (15, 21, 25, 31, 35, 41)
MAX_KERNEL_SIZE = 255  # bounds memory and time; half the 512 source is already a lot of blur
MAX_LAYERS = 10  # the thesis draws 1-3
MAX_SCALE = 16.0  # a 256 px face down to 16 px
MAX_NOISE = 255.0  # sigma on the 0..255 scale
RECIPE_VERSION = 1
JPEG_AT = ("source", "crop")


@dataclass(frozen=True)
class PipelineOptions:
    """Every range and set of the pipeline; the defaults are the thesis' values."""

    layers: tuple[int, ...] = (1, 2, 3)
    sequences: tuple[str, ...] = tuple(SEQUENCES)
    gaussian_sizes: tuple[int, ...] = THESIS_KERNEL_SIZES
    motion_sizes: tuple[int, ...] = THESIS_KERNEL_SIZES
    directions: tuple[str, ...] = DIRECTIONS
    scale_range: tuple[float, float] = (2.0, 4.0)
    noise_range: tuple[float, float] = (5.0, 10.0)
    blur: bool = True
    rescale: bool = True
    noise: bool = True
    # Not in the thesis: JPEG compression after the noise, for a share of the images, at a quality
    # drawn from jpeg_range (integers). Real photos arrive compressed; a network that never saw it
    # sharpens 8x8 blocking into visible squares.
    jpeg: bool = False
    jpeg_range: tuple[int, int] = (30, 95)
    jpeg_share: float = 1.0
    # Where a sample is compressed (smfd.data.make_pair): "source", the degraded 512x512 face before
    # it is halved to the working size (which shrinks and smooths the 8x8 blocks), or "crop", the
    # working-size face, as a compressed photo's face reaches the network after alignment.
    jpeg_at: str = "source"
    # Step used to discretise the continuous scale and noise ranges when counting scenarios.
    count_step: float = 0.1

    def __post_init__(self) -> None:
        # Normalise lists from JSON / the CLI into tuples so options stay hashable.
        for name in ("layers", "sequences", "gaussian_sizes", "motion_sizes", "directions",
                     "scale_range", "noise_range", "jpeg_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # The sets in one order (the draws pick by position): the same options typed in another
        # order, or ticked in another order in the app, draw the same images.
        for name, known in (("sequences", tuple(SEQUENCES)), ("directions", DIRECTIONS)):
            values = getattr(self, name)  # unknown names last, for validate to name
            object.__setattr__(self, name, tuple(sorted(values, key=lambda v: known.index(v) if v in known
                                                        else len(known))))
        for name in ("layers", "gaussian_sizes", "motion_sizes"):
            if all(_is_finite(v) for v in getattr(self, name)):
                object.__setattr__(self, name, tuple(sorted(getattr(self, name))))
        self.validate()

    @property
    def changes_nothing(self) -> bool:
        """Every stage off: a degradation would be a copy (valid, but never what a user means)."""
        return not (self.blur or self.rescale or self.noise or self.jpeg)

    def validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"invalid pipeline option: {msg}")

        for name in ("blur", "rescale", "noise", "jpeg"):  # "false" (a string) would switch a stage on
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.blur:
            for name in ("layers", "gaussian_sizes", "motion_sizes"):
                values = getattr(self, name)
                if not all(_is_int(v) for v in values):
                    fail(f"{name} must be integers, got {list(values)}")
            # A repeated value would be counted twice and drawn twice as often.
            for name in ("layers", "sequences", "gaussian_sizes", "motion_sizes", "directions"):
                values = getattr(self, name)
                if len(set(values)) != len(values):
                    fail(f"{name} must not repeat a value, got {list(values)}")
            if not self.layers or any(not 1 <= n <= MAX_LAYERS for n in self.layers):
                fail(f"layers must be positive integers up to {MAX_LAYERS}, got {list(self.layers)}")
            if not self.sequences or any(s not in SEQUENCES for s in self.sequences):
                fail(f"sequences must be among {list(SEQUENCES)}, got {list(self.sequences)}")
            needs_g = any("G" in SEQUENCES[s] for s in self.sequences)
            if needs_g and not self.gaussian_sizes:
                fail("a sequence with Gaussian blur needs at least one Gaussian kernel size")
            if not self.motion_sizes or not self.directions:
                fail("every sequence has a motion blur: give motion sizes and directions")
            for name in ("gaussian_sizes", "motion_sizes"):
                for k in getattr(self, name):
                    if k < 1 or k % 2 == 0 or k > MAX_KERNEL_SIZE:
                        fail(f"{name} must be odd kernel sizes between 1 and {MAX_KERNEL_SIZE}, got {k}")
            bad = [d for d in self.directions if d not in DIRECTIONS]
            if bad:
                fail(f"directions must be among {list(DIRECTIONS)}, got {bad}")
        # Beyond these bounds an image is noise or a few pixels: a typo, not an experiment.
        for name, low, high, on in (("scale_range", 1.0, MAX_SCALE, self.rescale),
                                    ("noise_range", 0.0, MAX_NOISE, self.noise)):
            bounds = getattr(self, name)
            if on and not (len(bounds) == 2 and all(_is_finite(v) for v in bounds)
                           and low <= bounds[0] <= bounds[1] <= high):
                fail(f"{name} must be two numbers with {low:g} <= low <= high <= {high:g}, got {list(bounds)}")
        q = self.jpeg_range
        if self.jpeg and not (len(q) == 2 and all(_is_int(v) for v in q) and 1 <= q[0] <= q[1] <= 100):
            fail(f"jpeg_range must be two integer qualities with 1 <= low <= high <= 100, got {list(q)}")
        if self.jpeg and not (_is_finite(self.jpeg_share) and 0 < self.jpeg_share <= 1):
            fail(f"jpeg_share must be a number in (0, 1], got {self.jpeg_share}")
        if self.jpeg_at not in JPEG_AT:
            fail(f"jpeg_at must be one of {', '.join(JPEG_AT)}, got {self.jpeg_at!r}")
        if not (_is_finite(self.count_step) and self.count_step > 0):
            fail(f"count_step must be a positive number, got {self.count_step}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineOptions":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"invalid pipeline option: unknown {', '.join(sorted(unknown))}")
        return cls(**data)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# Named pipelines for training: the thesis' own (the shipped model's; see its model card), and the
# thesis' plus JPEG compression on half the samples, as real photos have it, at the source's scale
# or at the crop's.
PRESETS = {"thesis": PipelineOptions(), "real": PipelineOptions(jpeg=True, jpeg_share=0.5),
           "real-crop": PipelineOptions(jpeg=True, jpeg_share=0.5, jpeg_at="crop")}


@dataclass(frozen=True)
class BlurOp:
    kind: str  # "gaussian" or "motion"
    size: int
    direction: str | None = None  # motion only


@dataclass(frozen=True)
class Recipe:
    """Every random choice of one degradation: replaying it gives the same pixels."""

    layers: tuple[tuple[BlurOp, ...], ...] = ()
    scale: float | None = None  # down-scaling factor, None = stage off
    noise_sigma: float | None = None  # on the 0..255 scale, None = stage off
    noise_seed: int | None = None
    jpeg_quality: int | None = None  # None = stage off
    version: int = field(default=RECIPE_VERSION)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "layers": [[asdict(op) for op in layer] for layer in self.layers],
            "scale": self.scale,
            "noise_sigma": self.noise_sigma,
            "noise_seed": self.noise_seed,
            "jpeg_quality": self.jpeg_quality,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """Rebuild a recipe, checking every field (recipes come from files users edit)."""
        if not isinstance(data, dict):
            raise ValueError("a recipe must be a JSON object")
        if data.get("version") != RECIPE_VERSION:
            raise ValueError(f"unsupported recipe version {data.get('version')!r}")
        missing = {"layers", "scale", "noise_sigma", "noise_seed"} - data.keys()
        if missing:
            raise ValueError(f"recipe lacks {', '.join(sorted(missing))}")
        try:
            layers = tuple(tuple(BlurOp(**op) for op in layer) for layer in data["layers"])
        except TypeError:
            raise ValueError("recipe layers must be lists of {kind, size, direction} objects") from None
        # The bounds of the pipeline's own options: a hand-edited recipe cannot run for hours.
        longest = max(len(letters) for letters in SEQUENCES.values())
        if len(layers) > MAX_LAYERS:
            raise ValueError(f"a recipe has at most {MAX_LAYERS} layers of blur, got {len(layers)}")
        for i, layer in enumerate(layers):
            if not 1 <= len(layer) <= longest:
                raise ValueError(f"a recipe's layer has 1 to {longest} blur operations, layer {i} has {len(layer)}")
        for layer in layers:
            for op in layer:
                odd_size = _is_int(op.size) and 1 <= op.size <= MAX_KERNEL_SIZE and op.size % 2 == 1
                if op.kind not in ("gaussian", "motion") or not odd_size:
                    raise ValueError(f"invalid blur operation in recipe: {op}")
                if op.kind == "motion" and op.direction not in DIRECTIONS:
                    raise ValueError(f"invalid motion direction in recipe: {op.direction!r}")
        scale, sigma, seed = data["scale"], data["noise_sigma"], data["noise_seed"]
        if scale is not None and not (_is_finite(scale) and 1 <= scale <= MAX_SCALE):
            raise ValueError(f"recipe scale must be a number from 1 to {MAX_SCALE:g} or null, got {scale!r}")
        if sigma is not None and not (_is_finite(sigma) and 0 <= sigma <= MAX_NOISE):
            raise ValueError(f"recipe noise_sigma must be a number from 0 to {MAX_NOISE:g} or null, got {sigma!r}")
        if seed is not None and not (_is_int(seed) and seed >= 0):
            raise ValueError(f"recipe noise_seed must be a non-negative integer or null, got {seed!r}")
        if (sigma is None) != (seed is None):
            raise ValueError("a recipe's noise needs both noise_sigma and noise_seed")
        quality = data.get("jpeg_quality")  # absent in recipes written before the JPEG stage
        if quality is not None and not (_is_int(quality) and 1 <= quality <= 100):
            raise ValueError(f"recipe jpeg_quality must be an integer 1..100 or null, got {quality!r}")
        return cls(layers, scale, sigma, seed, quality)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        return cls.from_json(Path(path).read_text())

    def describe(self) -> str:
        """One line for humans, e.g. ``G21>M35/diagonal | M15/vertical, x2.7, noise 6.3``."""
        layers = " | ".join(
            ">".join(f"G{op.size}" if op.kind == "gaussian" else f"M{op.size}/{op.direction}"
                     for op in layer) for layer in self.layers) or "no blur"
        scale = f"x{self.scale:.2f}" if self.scale is not None else "no rescale"
        noise = f"noise {self.noise_sigma:.2f}" if self.noise_sigma is not None else "no noise"
        jpeg = f", JPEG q{self.jpeg_quality}" if self.jpeg_quality is not None else ""
        return f"{layers}, {scale}, {noise}{jpeg}"


# ---------------------------------------------------------------- kernels

def gaussian_sigma(size: int) -> float:
    """OpenCV's sigma for a Gaussian kernel of this size when sigma is left at 0."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(size: int) -> np.ndarray:
    g = cv2.getGaussianKernel(size, gaussian_sigma(size), ktype=cv2.CV_64F)
    return g @ g.T


def motion_kernel(size: int, direction: str) -> np.ndarray:
    k = np.zeros((size, size), np.float64)
    c = size // 2
    if direction == "horizontal":
        k[c, :] = 1
    elif direction == "vertical":
        k[:, c] = 1
    elif direction == "diagonal":
        np.fill_diagonal(k, 1)
    elif direction == "anti-diagonal":
        np.fill_diagonal(np.fliplr(k), 1)
    else:
        raise ValueError(f"unknown motion direction {direction!r}")
    return k / k.sum()


def kernel_of(op: BlurOp) -> np.ndarray:
    return gaussian_kernel(op.size) if op.kind == "gaussian" else motion_kernel(op.size, op.direction)


def effective_psf(recipe: Recipe) -> np.ndarray:
    """The point-spread function of all blur layers together (full convolution of the kernels).

    Scaling and noise are not linear shift-invariant blur and are left out. A recipe without
    blur has the identity PSF ``[[1.0]]``.
    """
    from scipy.signal import convolve

    psf = np.ones((1, 1))
    for layer in recipe.layers:
        for op in layer:
            # scipy picks direct or FFT convolution by size: 15 blurs of 61 px take 0.3 s, not 13.
            psf = convolve(psf, kernel_of(op), mode="full")
    psf = np.clip(psf, 0, None)  # an FFT leaves rounding noise of about 1e-20 below zero
    return psf / psf.sum()


# ---------------------------------------------------------------- sampling and applying

def sample_recipe(rng: np.random.Generator, options: PipelineOptions = PipelineOptions()) -> Recipe:
    layers: list[tuple[BlurOp, ...]] = []
    if options.blur:
        for _ in range(int(rng.choice(options.layers))):
            letters = SEQUENCES[options.sequences[rng.integers(len(options.sequences))]]
            ops = []
            for letter in letters:
                if letter == "G":
                    ops.append(BlurOp("gaussian", int(rng.choice(options.gaussian_sizes))))
                else:
                    ops.append(BlurOp("motion", int(rng.choice(options.motion_sizes)),
                                      str(options.directions[rng.integers(len(options.directions))])))
            layers.append(tuple(ops))
    scale = float(rng.uniform(*options.scale_range)) if options.rescale else None
    noise_sigma = float(rng.uniform(*options.noise_range)) if options.noise else None
    noise_seed = int(rng.integers(2**63 - 1)) if options.noise else None
    # Drawn last so that turning JPEG on leaves every other choice of a seed's recipe unchanged.
    quality = None
    if options.jpeg and rng.random() < options.jpeg_share:
        quality = int(rng.integers(options.jpeg_range[0], options.jpeg_range[1] + 1))
    return Recipe(tuple(layers), scale, noise_sigma, noise_seed, quality)


def apply(image: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Degrade an RGB (or grayscale) uint8 image with a recipe; returns uint8 of the same shape."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 HxW or HxWxC image, got {image.dtype} {image.shape}")
    if recipe.jpeg_quality is not None and image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ValueError(f"a recipe with JPEG needs a grey or RGB image (JPEG has no other), got {image.shape[2]} "
                         "channels")
    h, w = image.shape[:2]
    x = image.astype(np.float32)
    for layer in recipe.layers:
        for op in layer:
            x = cv2.filter2D(x, -1, kernel_of(op).astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    if recipe.scale is not None and recipe.scale != 1.0:
        small = (max(1, round(w / recipe.scale)), max(1, round(h / recipe.scale)))
        x = cv2.resize(cv2.resize(x, small, interpolation=cv2.INTER_LINEAR), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    x = x.reshape(image.shape)  # filter2D and resize drop a trailing channel axis of size 1
    if recipe.noise_sigma is not None:
        noise = np.random.default_rng(recipe.noise_seed).standard_normal(x.shape, dtype=np.float32)
        x = x + np.float32(recipe.noise_sigma) * noise
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out if recipe.jpeg_quality is None else jpeg_roundtrip(out, recipe.jpeg_quality)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG (4:2:0, as cameras and websites do) and decode again."""
    colour = image.ndim == 3 and image.shape[2] == 3
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    flags = cv2.IMREAD_COLOR if colour else cv2.IMREAD_UNCHANGED
    out = cv2.imdecode(buf, flags)
    return (cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if colour else out).reshape(image.shape)


def degrade(image: np.ndarray, rng: np.random.Generator,
            options: PipelineOptions = PipelineOptions()) -> tuple[np.ndarray, Recipe]:
    recipe = sample_recipe(rng, options)
    return apply(image, recipe), recipe


# ---------------------------------------------------------------- counting

@dataclass(frozen=True)
class ScenarioCount:
    per_layer: int
    blur: int
    scales: int
    noise_levels: int
    jpeg_qualities: int = 1

    @property
    def total(self) -> int:
        return self.blur * self.scales * self.noise_levels * self.jpeg_qualities


def _grid_size(lo: float, hi: float, step: float) -> int:
    return math.floor(round((hi - lo) / step, 9)) + 1


def count_scenarios(options: PipelineOptions = PipelineOptions()) -> ScenarioCount:
    """Count distinct scenarios by enumeration arithmetic (thesis 3.4.1).

    Per layer: the sum over allowed sequences of the product of each operation's choices
    (Gaussian: sizes; motion: sizes x directions). Blur: the sum over allowed layer counts n of
    per_layer**n. Scale and noise are discretised with ``count_step``; JPEG counts its integer qualities, plus
    one for "not compressed" when only a share of the images is. A disabled stage counts 1.
    """
    choices = {"G": len(options.gaussian_sizes), "M": len(options.motion_sizes) * len(options.directions)}
    per_layer = sum(math.prod(choices[c] for c in SEQUENCES[s]) for s in options.sequences)
    blur = sum(per_layer ** n for n in set(options.layers)) if options.blur else 1
    scales = _grid_size(*options.scale_range, options.count_step) if options.rescale else 1
    noise = _grid_size(*options.noise_range, options.count_step) if options.noise else 1
    jpeg = options.jpeg_range[1] - options.jpeg_range[0] + 1 + (options.jpeg_share < 1) if options.jpeg else 1
    return ScenarioCount(per_layer if options.blur else 0, blur, scales, noise, jpeg)
