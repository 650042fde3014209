"""The named API endpoints ``restore``, ``mask`` and ``blur`` for gradio_client:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    restored = client.predict(handle_file("face.png"), api_name="/restore")  # -> PNG path
"""

from __future__ import annotations

import gradio as gr
import numpy as np
from gradio import FileData
from gradio.utils import get_upload_folder, is_in_or_equal

from smfd import degrade
from smfd.blur_files import recipe_record, recipe_text
from smfd.errors import InputError
from smfd.images import write_png

from . import examples
from .context import AppContext
from .errors import shown_to_user
from .face import fit_to, safe_stem, write_mask_png
from .uploads import FULL_SIZE_PIXELS, read_mask_upload, read_upload


def _file(data, what: str) -> dict:
    """An uploaded file's record, or a one-line error when the call sent none (or something else).

    Gradio checks that a record's file was uploaded only when the record says it is a file (its
    ``meta``): a bare {"path": ...} would read any image on the server, and tell whether any path
    exists. So the path must lie in Gradio's upload folder, whatever the record says."""
    if not isinstance(data, dict) or not data.get("path"):
        raise gr.Error(f"{what}: a file is required (gradio_client: handle_file(PATH))")
    if not is_in_or_equal(str(data["path"]), get_upload_folder()):
        raise gr.Error(f"{what}: not a file uploaded to this server (gradio_client: handle_file(PATH))")
    return data


def _image(data, **budget) -> np.ndarray:
    data = _file(data, "image")
    return read_upload(data["path"], data.get("orig_name"), **budget)


def _stem(data: dict) -> str:
    return safe_stem(data.get("orig_name") or data["path"])


def register(ctx: AppContext) -> None:
    """Add the endpoints to the Blocks being built."""

    def restore(image: FileData, mask: FileData | None = None) -> FileData:
        """Deblur an aligned face crop (any size). mask: optional label PNG with the 5 groups
        (values 0..4, as written by the mask endpoint) or the 19 CelebAMask-HQ classes; without
        it the mask generator makes one. Returns the restored face as a PNG of the input's size."""
        picture = _image(image)
        labels = read_mask_upload(_file(mask, "mask")["path"], "auto", mask.get("orig_name")) if mask else None
        if labels is not None:  # as the Restore tab: another aspect ratio is another picture
            try:
                labels = fit_to(labels, picture, "mask", nearest=True)
            except InputError as exc:  # two files came: the message names the mask's
                raise gr.Error(f"{mask.get('orig_name') or 'mask'}: {exc}", title="Unusable mask") from None
        with shown_to_user():
            out = ctx.restorer.restore(picture, labels)
        return FileData(path=str(write_png(ctx.output_dir() / f"{_stem(image)}_restored.png", out)))

    def mask(image: FileData) -> FileData:
        """The 5-group face mask of an aligned face crop: a palette PNG whose values are the
        groups (0 background, 1 face skin, 2 facial parts, 3 hair, 4 accessories)."""
        picture = _image(image)
        with shown_to_user():
            groups = ctx.restorer.mask(picture)
        return FileData(path=str(write_mask_png(ctx.output_dir() / f"{_stem(image)}_mask.png", groups)))

    def blur(image: FileData, seed: int = 0, layers: list[int] | None = None,
             sequences: list[str] | None = None, gaussian_sizes: list[int] | None = None,
             motion_sizes: list[int] | None = None, directions: list[str] | None = None,
             scale_range: list[float] | None = None, noise_range: list[float] | None = None,
             blur_stage: bool = True, rescale_stage: bool = True, noise_stage: bool = True,
             jpeg_stage: bool = False, jpeg_range: list[int] | None = None, jpeg_share: float | None = None
             ) -> tuple[FileData, str]:
        """Degrade an image with the thesis pipeline, as `smfd blur` does (any option left out
        keeps the thesis' value; JPEG compression, not in the thesis, is `jpeg_stage` with
        `jpeg_range` and `jpeg_share`, as `smfd blur --jpeg LO HI --jpeg-share P`; a file and seed
        give the pixels `smfd blur --seed` gives that
        file, as 8-bit RGB: `smfd blur` also keeps a file's transparency and colour profile).
        Returns the degraded PNG and the recipe as JSON, which `smfd blur --recipe` replays
        exactly. Images blur at full size: up to 4.2 megapixels."""
        picture = _image(image, max_pixels=FULL_SIZE_PIXELS, what="blurring at full size")
        given = dict(layers=layers, sequences=sequences, gaussian_sizes=gaussian_sizes,
                     motion_sizes=motion_sizes, directions=directions, scale_range=scale_range,
                     noise_range=noise_range, jpeg_range=jpeg_range)
        for key, value in given.items():  # else PipelineOptions' own TypeError, which names no option
            if value is not None and not (isinstance(value, list) and all(
                    isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value)):
                raise gr.Error(f"{key}: a list of numbers or names, got {str(value)[:80]}")
        if jpeg_share is not None and (isinstance(jpeg_share, bool) or not isinstance(jpeg_share, (int, float))):
            raise gr.Error(f"jpeg_share: a number in (0, 1], got {str(jpeg_share)[:80]}")
        if not jpeg_stage and (jpeg_range is not None or jpeg_share is not None):  # as smfd blur refuses
            raise gr.Error("jpeg_range and jpeg_share set the JPEG stage: give jpeg_stage=True with them")
        try:
            seed = examples.seed_from(seed, limit=None)  # any, as `smfd blur --seed`: no file is named by it
            options = degrade.PipelineOptions(blur=blur_stage, rescale=rescale_stage, noise=noise_stage,
                                               jpeg=jpeg_stage, **{k: v for k, v in given.items() if v is not None},
                                               **({} if jpeg_share is None else {"jpeg_share": jpeg_share}))
        except (TypeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        if options.changes_nothing:
            raise gr.Error(examples.NOTHING_DEGRADED)
        name = image.get("orig_name") or "upload"
        degraded, recipe = examples.blurred(picture, seed, name, options)  # as smfd blur draws and applies
        out = write_png(ctx.output_dir() / f"{_stem(image)}_blurred.png", degraded)
        record = recipe_record(recipe, options, seed, name)
        return FileData(path=str(out)), recipe_text(record)

    model = dict(concurrency_id="model")
    gr.api(restore, api_name="restore", **model)
    gr.api(mask, api_name="mask", **model)
    gr.api(blur, api_name="blur", **model)
