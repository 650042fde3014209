"""Image files and the one in-memory convention: RGB, HxWxC, uint8 (or float32 in [0, 1]).

Reading and (atomically) writing files, value conversions and resizing of images and label maps
go through here, and every problem with an input file becomes an :class:`InputError` whose
message names the file and the reason.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from . import labels
from .errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
EIGHT_BITS = np.rint(np.arange(65536) / 257).astype(np.uint8)  # each 16-bit value's 8-bit one: 65535 is white
ORIENTATION = 0x0112  # the EXIF tag
# EXIF orientation -> the turn that makes the image upright (the EXIF standard's eight values)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
ROWS = 256  # rows of a 16-bit image handled at once: a few copies of a whole one would take gigabytes
MAX_PIXELS = 100_000_000  # ~10000x10000; larger files are refused rather than risking memory
_OPENCV_LOG = threading.Lock()
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def process_umask() -> int:
    """The process's umask now (a server may tighten it after import): Linux shows it in /proc
    without changing it; elsewhere the one at import."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK


def list_images(path: str | Path) -> list[Path]:
    """A file -> [file]; a folder -> its image files, sorted. Raises InputError if missing/empty."""
    if not str(path).strip():  # e.g. an unset shell variable; Path('') would be the current folder
        raise InputError("the input path is empty: name a file or folder")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    if not path.is_dir():  # a device or a pipe: nothing to list and no image to read whole
        raise InputError(f"{path}: not a regular file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


@contextmanager
def _pillow_quietly():
    """Pillow's warnings that tell our users nothing: its decompression-bomb warning (our limit is
    MAX_PIXELS, checked with the size named; Pillow's would refuse 89.5 to 100 megapixels without
    saying so) and those about a damaged EXIF block (e.g. "Corrupt EXIF data", "Truncated File
    Read", all from its TIFF tag reader), which only loses the image its orientation and resolution."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        yield


def _open(path: Path, decode: bool = True) -> Image.Image:
    """The image, checked (exists, not empty, an image, not too large) and decoded; with
    ``decode=False`` only its header is read (still open: the caller closes it)."""
    if not path.is_file():
        raise InputError(f"{path}: {'a folder, not an image file' if path.is_dir() else 'no such file'}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        with _pillow_quietly():  # Image.open reads a JPEG's EXIF block for its resolution
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{path}: image is too large ({img.width}x{img.height}, "
                                 f"limit {MAX_PIXELS // 1_000_000} megapixels)")
            frames = getattr(img, "n_frames", 1)  # decoded, only the first would be restored, silently
            if frames > 1 and img.format != "MPO":  # MPO: a camera's JPEG, its second picture a preview
                raise InputError(f"{path}: holds {frames} frames or pages (an animation or a multi-page file); "
                                 "save the one wanted as an image of its own")
            if decode:
                img.load()
    except InputError:
        raise
    except Image.DecompressionBombError:  # Pillow's hard limit, twice its own: beyond ours too
        raise InputError(f"{path}: image is too large (limit {MAX_PIXELS // 1_000_000} megapixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (unrecognised format)") from None
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    return img


def _deep_colour(path: Path, img: Image.Image) -> np.ndarray | None:
    """A 16-bit colour image's values as stored (RGB or RGBA, uint16), of which Pillow (``img``, the
    file as it decoded it) keeps 8 bits only; None for any other image. Read at 8 bits as well: one
    turned by its EXIF orientation (OpenCV, which reads the 16 bits, cannot read a turned TIFF), one
    with a transparent colour instead of an alpha channel (OpenCV does not apply it), and one OpenCV
    reads otherwise than Pillow (e.g. a TIFF of premultiplied alpha or of planes compressed apart)."""
    with Image.open(path) as header:  # only the undecoded file says how deep its values are, and a
        # TIFF how it is turned (decoded, it is turned upright already; a PNG's turn is in img)
        if img.mode not in ("RGB", "RGBA") or not header.tile or ";16" not in str(header.tile[0].args):
            return None
        turn = (header if header.format == "TIFF" else img).getexif().get(ORIENTATION, 1)
    if "transparency" in img.info or turn in range(2, 9):
        return None
    stored = np.fromfile(path, np.uint8)  # decoded from memory: OpenCV cannot open every file name
    if header.format == "PNG":  # its colour profile and the like are not needed, and libpng would
        stored = _critical_chunks(stored)  # print warnings about a flawed one
    with _OPENCV_LOG:  # the level is the process's: two threads must not swap it back and forth
        logs = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # e.g. a TIFF tag it does not know
        try:
            pixels = cv2.imdecode(stored, cv2.IMREAD_UNCHANGED)
        finally:
            cv2.utils.logging.setLogLevel(logs)
    if pixels is None or pixels.dtype != np.uint16 or pixels.shape != (img.height, img.width, len(img.mode)):
        return None
    cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if pixels.shape[2] == 3 else cv2.COLOR_BGRA2RGBA, dst=pixels)
    eight = np.asarray(img)
    for top in range(0, img.height, ROWS):  # Pillow's 8 bits are the top byte of each value
        if not np.array_equal(pixels[top:top + ROWS] >> 8, eight[top:top + ROWS]):
            return None
    return pixels


def _critical_chunks(png: np.ndarray) -> np.ndarray:
    """A PNG file's bytes with only the chunks that hold its pixels (named in capitals first)."""
    data = memoryview(png)
    kept, at = [data[:8]], 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        if data[at + 4] < ord("a"):  # a critical chunk: IHDR, PLTE, IDAT, IEND
            kept.append(data[at:at + 12 + length])
        at += 12 + length
    return np.frombuffer(b"".join(kept), np.uint8)


LABEL_MODES = ("P", "L", "I;16", "I")  # palette or grayscale: one index per pixel


def is_grey(image: np.ndarray) -> bool:
    """Whether an RGB image holds one grey level per pixel (a black-and-white photo read as RGB)."""
    return bool((image[..., :1] == image).all())


def check_image_file(path: str | Path, label_map: bool = False, decode: bool = False) -> tuple[int, int]:
    """Refuse a missing, empty, non-image or oversized file (or, with ``label_map``, one that is
    not a palette or grayscale PNG) from its header alone, or with ``decode`` also a truncated or
    corrupt body (about a millisecond a 512x512 face). Returns (width, height) as stored (before
    any EXIF turn)."""
    with _open(Path(path), decode=decode) as img:
        if label_map:
            _check_label_mode(path, img)
        return img.size


def _check_label_mode(path, img: Image.Image) -> None:
    if img.mode not in LABEL_MODES:
        raise InputError(f"{path}: a label map must be a palette or grayscale PNG, got mode {img.mode}")


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned by its EXIF orientation, as phone photos need. Not ImageOps.exif_transpose:
    it writes the EXIF block back, and fails on a tag of an unexpected type that reading passed
    over (a damaged block should only lose the image its orientation; none is written out here)."""
    turn = img.getexif().get(ORIENTATION, 1)
    return img.transpose(_UPRIGHT[turn]) if turn in _UPRIGHT else img


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image file as RGB uint8 HxWx3 (alpha dropped, grayscale expanded), turned
    upright by its EXIF orientation as phone photos need."""
    img = _open(Path(path))
    with _pillow_quietly():
        deep = _deep_colour(Path(path), img)
        img = _upright(img)
    if deep is not None:
        return EIGHT_BITS[deep[..., :3]]
    if img.mode.startswith("I;16"):  # 16-bit grayscale
        img = Image.fromarray(EIGHT_BITS[np.asarray(img)])
    elif img.mode in ("I", "F"):  # 32-bit integer or float: no fixed white level, so stretch
        arr = np.asarray(img, np.float64)
        if not np.isfinite(arr).all():
            raise InputError(f"{path}: holds pixel values that are not numbers (NaN or infinity)")
        img = Image.fromarray(np.clip(arr / max(arr.max(), 1) * 255, 0, 255).astype(np.uint8))
    return np.asarray(img.convert("RGB"))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label PNG (palette or grayscale) as the raw uint8 indices HxW.

    Palette PNGs must go through PIL: OpenCV would return the palette colours instead.
    """
    img = _open(Path(path))
    _check_label_mode(path, img)
    raw = np.asarray(img)
    if raw.size and (raw.min() < 0 or raw.max() > 255):  # 16/32-bit PNGs: no silent wrap-around
        raise InputError(f"{path}: label values must lie in 0..255, found {raw.min()}..{raw.max()}")
    return raw.astype(np.uint8)


def read_groups(path: str | Path, values: str = "groups") -> np.ndarray:
    """A label PNG as a 5-group map (uint8 HxW, 0..4). ``values``: 'groups' (0..4, as ``smfd mask``
    writes), 'classes' (the 19 CelebAMask-HQ classes, merged into the groups), or 'auto' (classes
    when a value above 4 occurs)."""
    if values not in ("groups", "classes", "auto"):
        raise ValueError(f"label values must be 'groups', 'classes' or 'auto', got {values!r}")
    raw = read_labels(path)
    try:
        if values == "classes" or (values == "auto" and raw.size and raw.max() >= len(labels.GROUPS)):
            return labels.to_groups(raw)
        return labels.check_groups(raw)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


PARTIAL_PREFIX = ".smfd-partial-"  # write_atomically's unfinished files: a name no one else gives a file


def write_atomically(path: str | Path, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a new file beside ``path``, then rename it to ``path``: a crash never
    leaves a half-written file, and readers see the old file or the whole new one. The new file
    reaches the disk before the rename, and the rename before the return: else a power loss could
    leave ``path`` renamed yet empty."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=PARTIAL_PREFIX, dir=path.parent)
    except OSError as exc:  # no permission, a file in the way, a full disk: one line naming the file
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        write(Path(tmp))
        # ``write`` closed its handle: the data reached the system, not yet the disk. (Before the
        # chmod, which may make the file read-only; Windows syncs only a handle open for writing.)
        _sync(tmp, os.O_RDWR)
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the folder's entry, so that the rename itself survives a power loss
        _sync(path.parent, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder, nor some file systems sync one
        pass
    return path


def _sync(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_figure(path: str | Path, figure, dpi: int) -> Path:
    """A matplotlib figure, written atomically in the format its file name gives (.png, .pdf, .svg;
    PNG when it has none)."""
    suffix = Path(path).suffix.lower() or ".png"
    return write_atomically(path, lambda tmp: figure.savefig(tmp, format=suffix[1:], dpi=dpi), suffix)


# zlib level 3 writes a restored 256x256 face in 8 ms instead of 27 ms at PIL's default level 6;
# the file is 10 % larger (measured on one restored face, 86 against 78 kB).
PNG_LEVEL = 3


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write uint8 HxW or HxWx3 as PNG atomically."""
    path = Path(path)
    image = Image.fromarray(np.ascontiguousarray(array))
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG", compress_level=PNG_LEVEL), ".png")


def write_like(path: str | Path, rgb: np.ndarray, source: str | Path, depth: bool = True) -> Path:
    """Write ``rgb`` (:func:`read_image` of ``source``, restored) as PNG with what the source file
    holds beyond 8-bit RGB, so that what was not restored stays as it was: its transparency, a
    grey image's single channel, a 16-bit image's values where the 8-bit ones are unchanged (not
    with ``depth=False``: 8 bits), and its colour profile and resolution (a phone photo's Display
    P3 profile would otherwise be lost)."""
    with _pillow_quietly():
        src = _open(Path(source))
        deep = _deep_colour(Path(source), src) if depth else None
        src = _upright(src)  # as read_image gave the pixels
    if deep is not None:  # 16-bit colour, opaque or with its own alpha channel
        _keep_deep(deep[..., :3], rgb)
        return write_atomically(path, lambda tmp: _write_deep_png(tmp, deep, **_info_for(src, "RGB")), ".png")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if src.getbands()[0] in ("L", "I", "F", "1") and is_grey(rgb):  # grey, and still grey
        if src.mode.startswith("I;16") and depth:
            deep = np.array(src, np.uint16)
            _keep_deep(deep[..., None], rgb[..., :1])
            image = Image.fromarray(deep)
        else:
            image = image.convert("L")
    if "A" in src.getbands() or "transparency" in src.info:
        if image.mode == "I;16":  # no 16-bit grey with alpha in Pillow: 8 bits, as read
            image = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))
        image = image.convert("LA" if image.mode == "L" else "RGBA")
        image.putalpha(src.convert("RGBA").getchannel("A"))
    extra = _info_for(src, image.mode)
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG", compress_level=PNG_LEVEL, **extra),
                            ".png")


def _info_for(src: Image.Image, mode: str) -> dict:
    """The source's colour profile and resolution as PNG options, less a profile that does not
    describe pixels of ``mode`` (e.g. a CMYK JPEG's)."""
    extra = {key: src.info[key] for key in ("icc_profile", "dpi") if src.info.get(key)}
    if "dpi" in extra and not all(0 < v < 100_000 for v in extra["dpi"]):  # PNG stores it in 32 bits:
        del extra["dpi"]  # a damaged EXIF block's 4294967295 dpi failed the save after the restoration
    space = b"RGB " if mode in ("RGB", "RGBA") else b"GRAY"
    if "icc_profile" in extra and extra["icc_profile"][16:20] != space:
        del extra["icc_profile"]
    return extra


def _keep_deep(deep: np.ndarray, restored: np.ndarray) -> None:
    """Change the 16-bit ``deep`` (H x W x C) to the 8-bit ``restored`` (x 257) where a pixel is no
    longer its 8-bit value: elsewhere it keeps its own. In place, a block of rows at a time."""
    for top in range(0, len(deep), ROWS):
        values, new = deep[top:top + ROWS], restored[top:top + ROWS]
        changed = (EIGHT_BITS[values] != new).any(-1)
        values[changed] = new[changed].astype(np.uint16) * 257


def _write_deep_png(path: Path, pixels: np.ndarray, icc_profile: bytes | None = None, dpi: tuple | None = None):
    """16-bit RGB or RGBA ``pixels`` (turned into OpenCV's BGR order in place) as a PNG file
    (Pillow writes colour at 8 bits only), with the colour profile and resolution as Pillow writes them."""
    cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA, dst=pixels)
    done, png = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not done:
        raise OSError(f"OpenCV could not encode a {pixels.shape} image as PNG")
    chunks = []
    if icc_profile:
        chunks.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))  # name, method 0 (zlib)
    if dpi:
        chunks.append((b"pHYs", struct.pack(">IIB", *(int(d / 0.0254 + 0.5) for d in dpi), 1)))  # per metre
    head = 8 + 25  # the signature and the IHDR chunk, which come first; these two before the pixels
    with open(path, "wb") as f:
        f.write(png[:head])
        for kind, data in chunks:
            f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))
        f.write(png[head:])


def same_aspect(shape: tuple[int, ...], reference: tuple[int, ...], tolerance: float = 0.02) -> bool:
    """Whether two images (shapes: height, width, ...) have one aspect ratio, to ``tolerance`` of
    it: another scale of one picture (a mask at half size), not another picture."""
    (h, w), (rh, rw) = shape[:2], reference[:2]
    return abs(h * rw - w * rh) <= tolerance * max(h * rw, w * rh)


def resize_to(image: np.ndarray, size: tuple[int, int], upscale: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Resize an image to (width, height): area averaging down, ``upscale`` interpolation up."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    shrink = size[0] * size[1] < w * h
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else upscale)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map to (width, height) with nearest neighbours, so that no label is mixed."""
    h, w = labels.shape[:2]
    if (w, h) == tuple(size):
        return labels
    return cv2.resize(labels, tuple(size), interpolation=cv2.INTER_NEAREST)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return image.astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


MIN_SIDE = 8  # px: the smallest side of an image the library restores or masks


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an in-memory RGB uint8 HxWx3 array (the library's input convention)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name}: expected an RGB uint8 HxWx3 array, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputError(f"{name}: image is too small ({image.shape[1]}x{image.shape[0]}; at least "
                         f"{MIN_SIDE} px on each side)")
    return image
