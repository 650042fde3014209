"""Inference engines: what runs the two networks of a :class:`~smfd.restorer.Restorer`.

``pytorch`` is the reference and runs anywhere (CPU under bf16 autocast where the CPU has native
bf16, or CUDA). ``openvino`` runs the same networks on CPUs, converted from the PyTorch modules
once and kept on disk under the cache folder, keyed by the networks' weights and the engine's
settings; it computes in bf16 where the CPU runs it natively (else float32). ``openvino-int8``
adds post-training int8 quantisation (NNCF), calibrated on :data:`CALIBRATION_FACES` degraded
copies of one real face (:func:`calibration_faces`).
``auto`` is OpenVINO on a CPU when the package is installed, else PyTorch.

Every engine takes and returns torch tensors on the Restorer's device, NCHW float32: the face in
[0, 1] at the working size, the mask generator's per-group probabilities, the restored face.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError, first_line
from .images import process_umask
from .models import config_to_dict, generated_mask_input, mask_probabilities, mirrored_restoration
from .paths import cache_root, sha256_of
from .runtime import fast_autocast, native_bf16

ENGINES = ("auto", "pytorch", "openvino", "openvino-int8")
CALIBRATION_FACES = 16  # int8: faces whose activations set the quantisation ranges
# int8: layers left in float. On 30 held-out faces with the shipped weights, SMFD-UNet all int8
# lost 0.31 dB, with this pattern 0.20 dB. It was meant for the whole first encoder level (full
# resolution, where the image and the mask come in), but it keeps only that level's 1x1 fuse and
# project convolutions: the conversion folds each 3x3 convolution with its BatchNorm into a node
# that loses the module's name (validate=False below hides that).
INT8_KEEP_FLOAT = (r".*encoder\.levels\.0\..*",)
INT8_RECIPE = 2  # part of the cache key: bump when the quantisation recipe changes
# Bump when what is stored in the cache changes meaning (e.g. the graph wrappers).
CACHE_FORMAT = 3  # 2: SMFD-UNet averaged over the mirror image inside its graph; 3: manifest.json
IR_FILES = ("mask.xml", "mask.bin", "deblur.xml", "deblur.bin")
log = logging.getLogger("smfd")


class MaskProbabilities(nn.Module):
    """The mask generator as the Restorer uses it: the face (RGB, Nx3xHxW in [0, 1]) -> per-group
    probabilities (Nx5xHxW), the mean of the face's and its mirror image's (the 5 groups are
    left-right symmetric, so a mirrored face gets the mirrored mask)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mask_probabilities(self.net, x)


class MirroredDeblur(nn.Module):
    """SMFD-UNet as the Restorer uses it: (face, mask) -> the restoration averaged over the face and
    its mirror image (:func:`~smfd.models.mirrored_restoration`), one graph for every engine."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return mirrored_restoration(self.net, x, m)


class TorchEngine:
    """The reference: the PyTorch modules themselves. ``threads``: PyTorch's threads around each
    call of the networks (None: as set in the process), this engine's own: a second Restorer with
    other threads does not change them."""

    name = "pytorch"

    def __init__(self, mask_model: nn.Module, deblur_model: nn.Module, device: torch.device,
                 threads: int | None = None):
        self.device = device
        self.torch_threads = threads
        self.masker = MaskProbabilities(mask_model).eval()
        self.deblurrer = MirroredDeblur(deblur_model).eval()

    def describe(self) -> str:
        bf16 = native_bf16(self.device.type)
        return f"pytorch ({self.device.type}, {'bf16 autocast' if bf16 else 'float32'}, " \
               f"{self.torch_threads or torch.get_num_threads()} threads)"

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with fast_autocast(self.device):
            return self.masker(x).float()

    @torch.no_grad()
    def deblur(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        with fast_autocast(self.device):
            return self.deblurrer(x, m).float()


def openvino_version() -> str | None:
    """The installed OpenVINO's version, or None when it cannot be imported."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def weights_digest(*models: nn.Module) -> str:
    """SHA-256 over the networks' configs and weights: the same weights give the same digest
    whichever file (or fp16/fp32 copy) they were loaded from."""
    digest = hashlib.sha256()
    for model in models:
        digest.update(json.dumps(config_to_dict(model.config), sort_keys=True).encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class OpenVINOEngine:
    """The networks converted to OpenVINO (CPU). Conversion runs once per weights and settings;
    later loads read the converted models (and OpenVINO's compiled blobs) from the cache."""

    name = "openvino"
    # PyTorch only reshapes and thresholds around the networks here. With its usual thread per core,
    # its idle threads spin on the cores that OpenVINO computes on: one thread gave 7 % more faces/s
    # through `smfd restore --aligned` on 2 cores.
    torch_threads = 1

    def __init__(self, mask_model: nn.Module, deblur_model: nn.Module, size: int, int8: bool = False,
                 threads: int | None = None, calibration: Callable[[], list[np.ndarray]] | None = None,
                 cache: str | Path | None = None):
        import openvino as ov

        self.int8 = int8
        self.threads = threads or default_threads()
        settings = {"format": CACHE_FORMAT, "openvino": ov.__version__, "size": size,
                    "int8": [INT8_RECIPE, nncf_version()] if int8 else False}
        key = hashlib.sha256((weights_digest(mask_model, deblur_model) + json.dumps(settings, sort_keys=True))
                             .encode()).hexdigest()[:16]
        self.folder = Path(cache or cache_root() / "engines") / f"openvino-{key}"
        self.converted_in: float | None = None  # seconds, when this load converted (None: cache hit)
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": self.threads,
                  "INFERENCE_PRECISION_HINT": "bf16" if native_bf16("cpu") else "f32"}
        core = ov.Core()
        try:
            cached = (self.folder / "manifest.json").is_file()
        except OSError:  # another user's entry in a shared cache that this one cannot read
            cached = False
        compiled = self._load_cached(core, config) if cached else None
        if compiled is None:  # converted in memory; the cache is a saving, not a condition
            start = time.perf_counter()
            networks = self._convert(mask_model, deblur_model, size, calibration)
            self.converted_in = time.perf_counter() - start
            log.info("converted for OpenVINO in %.1f s", self.converted_in)
            compiled = [core.compile_model(ir, "CPU", config) for ir in networks]
        self._mask, self._deblur = compiled
        # what OpenVINO runs, not what was asked: a CPU without bf16 computes f32 whatever SMFD_BF16 says
        self.precision = "bf16" if self._deblur.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "f32"
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"openvino {'int8 + ' if self.int8 else ''}{self.precision}, {self.threads} threads"

    def _load_cached(self, core, config: dict) -> list | None:
        """The cached networks compiled (with OpenVINO's compiled blobs where they can be kept), or
        None, the entry discarded, when it cannot be read or is not what was written (cut short,
        partly deleted, bytes changed: OpenVINO would run changed weights without a word)."""
        try:
            if json.loads((self.folder / "manifest.json").read_text()) != _digests(self.folder):
                raise RuntimeError("its files are not those converted (manifest.json)")
            networks = [core.read_model(self.folder / name) for name in ("mask.xml", "deblur.xml")]
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("the OpenVINO cache %s cannot be read (%s); converting again", self.folder, first_line(exc))
            _discard(self.folder)
            return None
        try:
            return [core.compile_model(n, "CPU", {**config, "CACHE_DIR": str(self.folder / "compiled")})
                    for n in networks]
        except (RuntimeError, OSError) as exc:  # the compiled blobs cannot be kept (a read-only cache)
            log.warning("OpenVINO's compiled networks cannot be cached in %s (%s)", self.folder, first_line(exc))
            return [core.compile_model(n, "CPU", config) for n in networks]

    def _convert(self, mask_model, deblur_model, size: int, calibration) -> tuple:
        """Both networks as OpenVINO models, also saved into the cache folder where it can be."""
        import openvino as ov

        log.info("converting the networks for OpenVINO%s (once per weights; cached in %s)",
                 " with int8 calibration" if self.int8 else "", self.folder)
        masker = MaskProbabilities(mask_model).eval().cpu()
        deblur = MirroredDeblur(deblur_model).eval().cpu()
        config = deblur_model.config
        x = torch.rand(1, 3, size, size)
        m = torch.rand(1, config.mask_channels, size, size)
        with torch.no_grad(), warnings.catch_warnings():
            # Tracing warns about the networks' shape checks: the shapes are fixed here.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation
            mask_ir = ov.convert_model(masker, example_input=x, input=[(1, 3, size, size)])
            deblur_ir = ov.convert_model(deblur, example_input=(x, m),
                                         input=[(1, 3, size, size), (1, config.mask_channels, size, size)])
        if self.int8:
            mask_ir, deblur_ir = _quantise(mask_ir, deblur_ir, calibration(), config)
        tmp = None
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=self.folder.parent))
            # float32 on disk: the precision is chosen when compiling, for the CPU at hand.
            ov.save_model(mask_ir, tmp / "mask.xml", compress_to_fp16=False)
            ov.save_model(deblur_ir, tmp / "deblur.xml", compress_to_fp16=False)
            (tmp / "manifest.json").write_text(json.dumps(_digests(tmp)))  # written last: a whole entry
            if self.folder.exists() and not (self.folder / "manifest.json").is_file():
                _discard(self.folder)  # a stale entry (e.g. only compiled/ left) would block the rename
            os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp's 0700 would shut out the cache's other users
            try:
                os.replace(tmp, self.folder)
            except OSError:  # another process converted the same weights meanwhile: theirs stays
                if not (self.folder / "manifest.json").is_file():
                    raise
        except (OSError, RuntimeError) as exc:  # a read-only or full cache: this run goes on uncached
            log.warning("the converted networks cannot be cached in %s (%s); they are converted again "
                        "next time", self.folder.parent, exc)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return mask_ir, deblur_ir

    # A compiled model's call reuses one inference request: one call at a time (the app restores
    # from a background thread too).
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with self._lock:
            return torch.from_numpy(self._mask(x.numpy())[0].copy())

    def deblur(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        with self._lock:
            return torch.from_numpy(self._deblur((x.numpy(), m.numpy()))[0].copy())


def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each IR file of a cache entry (about 0.1 s for the shipped networks)."""
    return {name: sha256_of(folder / name) for name in IR_FILES}


def _discard(folder: Path) -> None:
    """Remove a cache entry: renamed aside first, so that no other process reads it half gone."""
    aside = folder.with_name(f".stale-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.replace(folder, aside)
    except OSError:
        return  # gone already, or another process moved it
    shutil.rmtree(aside, ignore_errors=True)


def nncf_version() -> str | None:
    """NNCF's version (part of an int8 cache key: another release may quantise otherwise), or None."""
    try:
        from importlib.metadata import version

        return version("nncf")
    except Exception:  # not installed: make_engine says so for openvino-int8
        return None


def _quantise(mask_ir, deblur_ir, faces: list[np.ndarray], deblur_config):
    """int8 post-training quantisation of both networks with NNCF, calibrated on ``faces``
    (aligned blurry faces at the working size) and the masks the float mask generator gives them."""
    import nncf  # make_engine checked that it is installed
    import openvino as ov

    inputs = [np.ascontiguousarray(f.transpose(2, 0, 1)[None], np.float32) / 255 for f in faces]
    float_mask = ov.Core().compile_model(mask_ir, "CPU")
    pairs = []
    for x in inputs:
        p = torch.from_numpy(float_mask(x)[0])
        pairs.append((x, generated_mask_input(deblur_config, p).numpy()))
    nncf.set_log_level(logging.WARNING)  # not a line per layer
    options = dict(subset_size=len(inputs), fast_bias_correction=True,
                   ignored_scope=nncf.IgnoredScope(patterns=list(INT8_KEEP_FLOAT), validate=False))
    return (nncf.quantize(mask_ir, nncf.Dataset(inputs), **options),
            nncf.quantize(deblur_ir, nncf.Dataset(pairs), **options))


def calibration_faces(n: int = CALIBRATION_FACES) -> list[np.ndarray]:
    """int8 calibration inputs: the built-in astronaut face (:func:`smfd.faces.astronaut_face`)
    degraded by the thesis pipeline with seeds 0..n-1 and shrunk to the working size, as the
    benchmark protocol makes its faces. No dataset is needed wherever the engine is built."""
    from .data import WORK_SIZE
    from .degrade import degrade
    from .faces import astronaut_face
    from .images import resize_to

    sharp = astronaut_face()
    return [resize_to(degrade(sharp, np.random.default_rng(seed))[0], (WORK_SIZE, WORK_SIZE)) for seed in range(n)]


def threads_asked() -> int | None:
    """``$SMFD_THREADS`` when set (checked), else None."""
    forced = os.environ.get("SMFD_THREADS", "").strip()
    if not forced:
        return None
    if not (forced.isascii() and forced.isdigit() and 1 <= int(forced) <= 1024):
        raise InputError(f"$SMFD_THREADS must be a number of threads from 1 to 1024, got {forced!r}")
    return int(forced)


def default_threads() -> int:
    """Inference threads: ``$SMFD_THREADS``, else one per core available to this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return threads_asked() or cores


def engine_for(name: str, device: torch.device) -> str:
    """The engine ``name`` runs as on ``device`` ("auto" resolved); an InputError where it cannot
    run: checked in milliseconds, before a command's long work (face search, network loading)."""
    if name not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_version() is not None else "pytorch"
    if name == "pytorch":
        return name
    if device.type != "cpu":
        raise InputError(f"the {name} engine runs on the CPU: add --device cpu, or use --engine pytorch "
                         f"for {device.type}")
    if openvino_version() is None:
        raise InputError(f"the {name} engine needs OpenVINO (pip install openvino, see requirements.txt)")
    if name == "openvino-int8" and nncf_version() is None:  # said before the conversion, which takes a minute
        raise InputError("the openvino-int8 engine needs nncf (pip install nncf, see requirements.txt)")
    return name


def make_engine(name: str, mask_model: nn.Module, deblur_model: nn.Module, device: torch.device, size: int,
                threads: int | None = None, calibration=None):
    """The engine ``name`` (see :data:`ENGINES`) for these networks on ``device``.

    ``auto`` falls back to PyTorch on a GPU, or where OpenVINO is not installed; an explicit
    ``openvino*`` on a GPU or without the package is an InputError.
    """
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= 1024):
        raise InputError(f"threads must be a number of threads from 1 to 1024, got {threads!r}")
    name = engine_for(name, device)
    if name == "pytorch":  # without threads: PyTorch's own default, one per core
        return TorchEngine(mask_model, deblur_model, device, threads or threads_asked())
    if name == "openvino-int8" and calibration is None:
        raise InputError("the openvino-int8 engine needs calibration faces")
    return OpenVINOEngine(mask_model, deblur_model, size, name == "openvino-int8", threads, calibration)
