"""Compare: the current face through SMFD (generated and given mask) and every baseline, side by
side, with per-image metrics when the sharp face is known. A baseline whose weights are absent
shows how to get them instead of a result."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import gradio as gr
import numpy as np

from baselines import MethodInfo, WeightsDamaged, WeightsMissing
from baselines import info as method_info
from smfd.errors import InputError
from smfd.images import write_png

from .context import AppContext
from .errors import shown_to_user
from .face import Face, quality
from .uploads import FULL_SIZE_PIXELS, check_pixels

COLUMNS = ["method", "PSNR (dB)", "SSIM", "seconds", "licence", "commercial use"]


@dataclass(frozen=True)
class Result:
    title: str
    image: np.ndarray | None = None
    seconds: float | None = None
    licence: str = ""
    commercial: str = ""
    problem: str = ""  # why there is no image (weights missing, no given mask)
    method: str = ""  # what its download is named after


def given_mask(face: Face) -> tuple[np.ndarray | None, str]:
    """The ground truth if known, else the user's edited mask."""
    if face.truth is not None:
        return face.truth, "ground-truth mask"
    if face.mask_source == "edited" and face.mask is not None:
        return face.mask, "your edited mask"
    return None, ""


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def terms(info: MethodInfo) -> tuple[str, str]:
    """(licence, commercial use) of a method as the registry states them."""
    return info.licence, "yes" if info.commercial_use else "no (non-commercial licence or weights)"


def run_all(ctx: AppContext, face: Face, progress=None) -> list[Result]:
    results = [Result("blurry input", face.blurry, method="blurry")]
    infos = ctx.external_methods()
    given, given_name = given_mask(face)
    steps = 2 + len(infos)
    tick = progress or (lambda *a, **k: None)

    tick(0 / steps, desc="SMFD with the generated mask")
    out, secs = _timed(ctx.run_method, "smfd", face.blurry)
    results.append(Result("SMFD (generated mask)", out, secs, *terms(method_info("smfd")), method="smfd"))
    tick(1 / steps, desc="SMFD with the given mask")
    if given is None:
        results.append(Result("SMFD (given mask)", problem="no given mask: load a dataset example "
                              "with a ground-truth mask, upload one in Restore, or edit the mask there"))
    else:
        out, secs = _timed(ctx.run_method, "smfd", face.blurry, given)
        results.append(Result(f"SMFD (given: {given_name})", out, secs, *terms(method_info("smfd-gt-mask")),
                              method="smfd-given-mask"))
    for k, info in enumerate(infos):
        tick((2 + k) / steps, desc=info.title)
        licence, commercial = terms(info)
        try:
            mask = None
            if info.needs_mask:
                mask = given if given is not None else face.generated if face.generated is not None \
                    else ctx.restorer.mask(face.blurry)
            ctx.baseline(info.name)  # loaded once per app, before the clock starts: seconds are restoring
            out, secs = _timed(ctx.run_method, info.name, face.blurry, mask)
            results.append(Result(info.title, out, secs, licence, commercial, method=info.name))
        except WeightsMissing as exc:  # the registry's message names server paths and command-line options
            fetch = (f"its weights file on this server is damaged; whoever runs the app can fetch it again with "
                     f"'smfd baselines download {info.name} --force'" if isinstance(exc, WeightsDamaged) else
                     f"its weights are not on this server; whoever runs the app can fetch them with "
                     f"'smfd baselines download {info.name}'")
            results.append(Result(info.title, licence=licence, commercial=commercial,
                                  problem=f"{fetch} (no restart needed)"))
        except InputError as exc:
            results.append(Result(info.title, licence=licence, commercial=commercial, problem=str(exc)))
        except Exception as exc:  # a broken method must not hide the others: show what failed
            results.append(Result(info.title, licence=licence, commercial=commercial,
                                  problem=f"failed ({type(exc).__name__}: {exc})"))
    return results


def table(face: Face, results: list[Result]) -> list[list]:
    rows = []
    for r in results:
        if r.image is None:
            continue
        psnr, ssim = quality(r.image, face.sharp) if face.sharp is not None else (None, None)
        rows.append([r.title, None if psnr is None else round(psnr, 2),
                     None if ssim is None else round(ssim, 4),
                     None if r.seconds is None else round(r.seconds, 2), r.licence, r.commercial])
    return rows


def unavailable(results: list[Result], has_baselines: bool) -> str:
    lines = [f"- **{r.title}**: {r.problem}" for r in results if r.problem]
    if not has_baselines:
        lines.append("- **Baselines**: this app was started without the baselines registry.")
    return "### Not shown\n" + "\n".join(lines) if lines else ""


def compare(ctx: AppContext, face: Face | None, progress=gr.Progress()):
    if face is None:
        raise gr.Error("Load or upload a face in the Restore tab first.")
    if face.whole_photo:  # every method here takes one aligned face, not a photo squashed to one
        raise gr.Error(f"{face.name} was restored as a whole photo; Compare runs every method on one face "
                       "crop: restore it with 'Whole photo' off, or upload a crop of the face.")
    # Every method runs at the image's size (the deconvolution's kernel grows with it).
    check_pixels(face.blurry.shape[1], face.blurry.shape[0], FULL_SIZE_PIXELS,
                 "comparing every method at full size (crop it to the face)", face.name)
    with shown_to_user():
        results = run_all(ctx, face, progress)
    # files named after the face and the method: what the gallery's download button saves
    folder = ctx.output_dir()
    gallery = [(str(write_png(folder / f"{face.file_stem}_{r.method}.png", r.image)), r.title)
               for r in results if r.image is not None]
    note = "" if face.sharp is not None else (
        "No sharp reference for this image, so no PSNR/SSIM (load an example or upload the sharp face).")
    return gallery, table(face, results), unavailable(results, ctx.baselines is not None), note


def fingerprint(face: Face | None) -> str:
    """What a comparison depends on: the face, the mask it would be given, and the sharp face its
    metrics are measured against."""
    if face is None:
        return ""
    digest = hashlib.sha256(face.blurry.tobytes())
    for known in (given_mask(face)[0], face.sharp):
        digest.update(b"-" if known is None else b"+" + known.tobytes())  # marked: a missing one differs
    return f"{face.name}:{face.blurry.shape}:{digest.hexdigest()}"


def compare_and_remember(ctx: AppContext, face: Face | None, progress=gr.Progress()):
    """compare's outputs, the header naming the face they belong to (another may have been loaded
    while they were computed) and that face's fingerprint."""
    return current(face), *compare(ctx, face, progress), fingerprint(face)


def on_select(face: Face | None, compared: str):
    """The header names the current face; results of another face are cleared, not shown under it."""
    if fingerprint(face) == compared:
        return current(face), gr.update(), gr.update(), gr.update(), gr.update()
    return current(face), [], None, "", ""


def current(face: Face | None) -> str:
    if face is None:
        return "No face yet: load or upload one in the **Restore** tab."
    known = "sharp face known" if face.sharp is not None else "no sharp reference"
    mask = "ground-truth mask known" if face.truth is not None else "no ground-truth mask"
    return f"Current face: **{face.name}** ({known}; {mask})."


def build(ctx: AppContext, face: gr.State, tab: gr.Tab) -> SimpleNamespace:
    about = gr.Markdown(current(None), elem_id="compare-current")
    run = gr.Button("Compare every method on the current face", variant="primary", elem_id="compare-run")
    gallery = gr.Gallery(label="Side by side", format="png", columns=4, height="auto",
                         object_fit="contain", elem_id="compare-gallery")
    note = gr.Markdown()
    metrics = gr.Dataframe(headers=COLUMNS, label="Per-image metrics (PSNR/SSIM at 256x256 against the sharp face)",
                           interactive=False, elem_id="compare-table")
    missing = gr.Markdown(elem_id="compare-missing")
    compared = gr.State("")  # fingerprint() of the face the results belong to
    tab.select(on_select, [face, compared], [about, gallery, metrics, missing, note], api_visibility="private",
               queue=False)
    run.click(partial(compare_and_remember, ctx), face, [about, gallery, metrics, missing, note, compared],
              api_visibility="private", concurrency_id="model")
    return SimpleNamespace(about=about)
