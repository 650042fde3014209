"""Restore: upload a blurry face or blur an example, see the generated mask, edit it with a brush
per group or swap in the ground truth, restore again, compare before/after, download."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr
import numpy as np

from smfd import labels
from smfd.images import write_png

from . import examples
from .context import AppContext
from .errors import shown_to_user
from .face import EDITOR_SIZE, Face, apply_strokes, editor_value, palette_hex, report, write_mask_png
from .uploads import (FULL_SIZE_PIXELS, WHOLE_PHOTO_PIXELS, Upload, check_pixels, checked_editor, checked_image,
                      read_mask_upload)


def legend_html() -> str:
    items = "".join(f'<span class="smfd-swatch"><i style="background:{c}"></i>{name}</span>'
                    for c, name in zip(palette_hex(), labels.GROUPS))
    return f'<div class="smfd-legend">{items}</div>'


def face_from_upload(image: Upload) -> Face:
    return Face(image.file_name, np.asarray(image))


def face_from_example(ctx: AppContext, name: str, seed) -> Face:
    if not name:
        raise gr.Error("Pick an example first.")
    with shown_to_user():  # e.g. a corrupt file in the --examples folder
        seed = examples.seed_from(seed)
        example = ctx.example(name)
        sharp, truth = example.load()
    blurry, recipe = examples.blurred(sharp, seed, example.stem)
    face = Face(f"{name} (seed {seed}: {recipe.describe()})", blurry, sharp, origin=example.stem)
    return face if truth is None else face.with_truth(truth)


def shown_report(face: Face | None):
    """The report of a face whose references changed: shown at once when it has a result."""
    return report(face) if face is not None and face.restored is not None else gr.update()


def with_sharp(face: Face | None, image):
    """(face, report, truth button) with the sharp reference uploaded."""
    if face is None:
        raise gr.Error("Upload the blurry face first, then its sharp reference.")
    with shown_to_user():
        face = face.with_sharp(np.asarray(image))
    return face, shown_report(face), gr.update()


def with_truth(face: Face | None, file, kind: str):
    """(face, report, truth button) with the uploaded mask read as ``kind`` says; called again
    when ``kind`` changes, so the mask always holds what the radio button says its values are."""
    if file is None:  # the radio button changed with no mask uploaded
        return face, gr.update(), gr.update()
    if face is None:
        raise gr.Error("Upload the blurry face first, then its ground-truth mask.")
    truth = read_mask_upload(file, kind, name=None)
    with shown_to_user():
        face = face.with_truth(truth)
    return face, shown_report(face), gr.Button(interactive=True)


def without(face: Face | None, reference: str):
    """(face, report, truth button) once the user removed a reference from its box."""
    if face is None:
        return None, gr.update(), gr.update()
    face = face.replace(**{reference: None})
    return face, shown_report(face), gr.Button(interactive=face.truth is not None)


def restored_with(ctx: AppContext, face: Face, mask, source: str) -> Face:
    """The face restored with ``mask``, or with the generated one when ``mask`` is None."""
    h, w = face.blurry.shape[:2]  # its fine detail is kept at full size: seconds per megapixel
    check_pixels(w, h, FULL_SIZE_PIXELS, "a face restored as one aligned crop (use `smfd restore --aligned` "
                 "for bigger ones)", face.name)
    with shown_to_user():
        result = ctx.restorer.restore_face(face.blurry, mask)
    generated = result.groups if result.generated else face.generated
    return face.replace(mask=result.groups, mask_source=source, restored=result.image, generated=generated)


def downloads(ctx: AppContext, face: Face) -> list[str]:
    """The restored face and its mask, in a folder of this request's own."""
    folder, stem = ctx.output_dir(), face.file_stem
    files = [write_png(folder / f"{stem}_restored.png", face.restored)]
    if face.mask is not None:
        files.append(write_mask_png(folder / f"{stem}_mask.png", face.mask))
    return [str(f) for f in files]


def cleared():
    """Empty outputs (slider, report, downloads, editor, truth button) for a new face."""
    return None, "", None, None, gr.Button(interactive=False)


def loaded(ctx: AppContext, face: Face):
    """Outputs for an example just loaded: its picture, empty results (the truth button live when
    it has a mask), and its references in their boxes: the sharp face, and its mask as a file of
    group values (the mask radio set to say so), so that what the face holds is what the boxes show."""
    # named apart from the used mask's download, which may sit beside it in the user's folder
    truth = (None if face.truth is None
             else write_mask_png(ctx.output_dir() / f"{face.file_stem}_true_mask.png", face.truth))
    return (face.blurry, *cleared()[:-1], gr.Button(interactive=truth is not None), face.sharp,
            None if truth is None else str(truth), "groups" if truth is not None else "auto")


def show(ctx: AppContext, face: Face):
    """Outputs for a restored face: state, slider, report, downloads, editor, truth button."""
    editor = editor_value(face) if face.mask is not None else None
    return (face, (face.blurry, face.restored), report(face), downloads(ctx, face), editor,
            gr.Button(interactive=face.truth is not None))


RESULT = ("generated", "mask", "mask_source", "restored", "note")  # what the model's work changes in a Face


def adopted(ctx: AppContext, face: Face | None, result: Face):
    """Outputs (as :func:`show`) for the model's ``result``, made from the face as it was when the
    model started, on the face as it is now: a reference uploaded or removed while the model
    worked stays as its box shows it, and the result for a face replaced meanwhile is dropped."""
    if face is None or not np.array_equal(face.blurry, result.blurry):  # (False for another shape too)
        return (gr.update(),) * 6
    return show(ctx, face.replace(**{key: getattr(result, key) for key in RESULT}))


def restore(ctx: AppContext, face: Face | None, whole_photo: bool, progress=gr.Progress()) -> Face:
    if face is None:
        raise gr.Error("Upload a blurry face or load an example first.")
    if whole_photo and ctx.whole_photo is not None:
        h, w = face.blurry.shape[:2]
        check_pixels(w, h, WHOLE_PHOTO_PIXELS, "the whole-photo mode (use `smfd restore` for bigger photos)",
                     face.name)
        progress(0.2, desc="Finding and restoring every face")
        with shown_to_user():
            out, found = ctx.whole_photo(face.blurry, ctx.restorer)
        if not found.restored:  # no copy of the input that looks like a result (as `smfd restore`)
            reason = found.summary() if found.faces else "no face found (an aligned face crop? switch off the whole-photo mode)"
            raise gr.Error(f"{face.name}: {reason}", title="No face restored")
        return face.replace(mask=None, mask_source="", restored=out, note=found.summary())
    progress(0.1, desc="Predicting the mask and restoring")
    return restored_with(ctx, face, None, "generated")


def restore_edited(ctx: AppContext, face: Face | None, edits: dict | None, progress=gr.Progress()) -> Face:
    if face is not None and face.whole_photo:
        raise gr.Error("A whole photo's faces have no one mask to edit: switch off the whole-photo mode "
                       "and restore an aligned face crop.")
    if face is None or face.mask is None:
        raise gr.Error("Restore once first: the editor starts from the generated mask.")
    layers = (edits or {}).get("layers") or []
    mask = apply_strokes(face.mask, layers)
    if not (mask != face.mask).any():  # the result would be the one shown already
        raise gr.Error("No brush strokes found: paint over the mask with a group's colour first.")
    progress(0.5, desc="Restoring with the edited mask")
    return restored_with(ctx, face, mask, "edited")


def restore_truth(ctx: AppContext, face: Face | None, progress=gr.Progress()) -> Face:
    if face is None or face.truth is None:
        raise gr.Error("This image has no ground-truth mask (load a dataset example or upload one).")
    progress(0.5, desc="Restoring with the ground-truth mask")
    return restored_with(ctx, face, face.truth, "ground truth")


def restore_generated(ctx: AppContext, face: Face | None, progress=gr.Progress()) -> Face:
    if face is None or face.generated is None:
        raise gr.Error("Restore once first.")
    progress(0.5, desc="Restoring with the generated mask")
    return restored_with(ctx, face, None, "generated")


def build(ctx: AppContext, face: gr.State) -> SimpleNamespace:
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            blurry_in = checked_image(label="Blurry face (an aligned face crop)", elem_id="restore-input")
            with gr.Row():
                example = gr.Dropdown([e.name for e in ctx.examples], value=ctx.examples[0].name,
                                      label="Example (blurred with the thesis pipeline)",
                                      filterable=True, scale=3, elem_id="restore-example")
                seed = gr.Number(0, precision=0, minimum=0, maximum=examples.SEEDS - 1, label="Seed",
                                 scale=1, min_width=80)
            load = gr.Button("Load and blur the example", elem_id="restore-load")
            whole = gr.Checkbox(False, label="Whole photo: find and restore every face",
                                visible=ctx.whole_photo is not None, elem_id="restore-whole")
            with gr.Accordion("Optional references", open=False):
                sharp_in = checked_image(label="Sharp reference (enables PSNR/SSIM)", elem_id="restore-sharp")
                truth_in = gr.File(label="Ground-truth mask: label PNG", file_types=[".png"],
                                   elem_id="restore-truth-file")
                kind = gr.Radio(["auto", "groups", "classes"], value="auto", label="Mask values",
                                info="groups: 0..4 as in smfd mask; classes: the 19 CelebAMask-HQ "
                                     "classes; auto: classes if a value above 4 occurs")
            run = gr.Button("Restore", variant="primary", elem_id="restore-run")
        with gr.Column(scale=2):
            # no download button of its own: it would save "image.png"; the files below are named
            slider = gr.ImageSlider(label="Before / after (drag the handle)", format="png",
                                    type="numpy", elem_id="restore-slider", max_height=560,
                                    buttons=["fullscreen"])
            info = gr.Markdown(elem_id="restore-report")
            files = gr.File(label="Download the restored face and its mask", file_count="multiple",
                            elem_id="restore-files")
    gr.Markdown("### The mask: paint a group's colour over it, then restore again")
    gr.HTML(legend_html())
    with gr.Row():
        editor = checked_editor(
            4 * EDITOR_SIZE ** 2, label="Mask over the blurry face", type="numpy", image_mode="RGBA", format="png",
            sources=(), transforms=(), canvas_size=(512, 512), height=640, elem_id="restore-editor",
            brush=gr.Brush(colors=palette_hex(), default_color=palette_hex()[1], color_mode="fixed",
                           default_size=8),
            eraser=gr.Eraser(default_size=8),
            layers=gr.LayerOptions(allow_additional_layers=False, layers=["edits"]), scale=2)
        with gr.Column(scale=1, min_width=240):
            again = gr.Button("Restore with the edited mask", variant="primary", elem_id="restore-edited")
            use_truth = gr.Button("Use the ground-truth mask", interactive=False, elem_id="restore-truth")
            use_generated = gr.Button("Back to the generated mask", elem_id="restore-generated")
            gr.Markdown("The brush paints one group per colour; the eraser removes strokes. "
                        "Masks download as palette PNGs whose values are the group ids, ready for "
                        "`smfd restore --masks`.")

    outputs = [face, slider, info, files, editor, use_truth]
    hidden = dict(api_visibility="private")
    # Every event that reads or changes the face, one at a time: an upload that ran beside the
    # adoption of a result for the face before it could leave that result shown beside the new face
    on_face = dict(concurrency_id="face", concurrency_limit=1, **hidden)
    # A new face starts without the previous one's references (and reads a mask's values as auto
    # again): the boxes show what the face has. A refused upload leaves no face: Restore would
    # have restored the one before it, shown beside the refused picture.
    references = [sharp_in, truth_in]
    blurry_in.upload(lambda image: (face_from_upload(image), *cleared(), None, None, "auto"), blurry_in,
                     [*outputs, *references, kind], **on_face).failure(
        lambda: (None, *cleared(), None, None, "auto", None), None, [*outputs, *references, kind, blurry_in],
        **on_face)
    blurry_in.clear(lambda: (None, *cleared(), None, None, "auto"), None, [*outputs, *references, kind], **on_face)
    load.click(partial(face_from_example, ctx), [example, seed], face, **on_face).success(
        partial(loaded, ctx), face, [blurry_in, *outputs[1:], *references, kind], **on_face)
    # A reference removed or refused (another picture's, not a mask) leaves the face and its box:
    # the boxes show what the face has.
    changed = [face, info, use_truth]

    def refused(reference: str):
        return lambda f: (None, *without(f, reference))

    sharp_in.upload(with_sharp, [face, sharp_in], changed, **on_face).failure(
        refused("sharp"), face, [sharp_in, *changed], **on_face)
    for event in (truth_in.upload, kind.change):  # the radio button says how to read the mask
        event(with_truth, [face, truth_in, kind], changed, **on_face).failure(
            refused("truth"), face, [truth_in, *changed], **on_face)
    sharp_in.clear(partial(without, reference="sharp"), face, changed, **on_face)
    truth_in.clear(partial(without, reference="truth"), face, changed, **on_face)
    # The model's result goes to the face as it is when the result comes: what was uploaded or
    # removed meanwhile stays.
    result = gr.State()
    model = dict(concurrency_id="model", **hidden)
    for trigger, work, inputs in ((run.click, restore, [face, whole]),
                                  (again.click, restore_edited, [face, editor]),
                                  (use_truth.click, restore_truth, face),
                                  (use_generated.click, restore_generated, face)):
        trigger(partial(work, ctx), inputs, result, **model).success(
            partial(adopted, ctx), [face, result], outputs, **on_face)
    return SimpleNamespace(input=blurry_in, outputs=outputs, references=references, kind=kind)
