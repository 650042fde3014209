"""Blur lab: every option of the degradation pipeline, the kernels, the effective PSF, the live
scenario count and the recipe, for any face; "send to restore" hands the result on."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr
import numpy as np

from smfd import degrade
from smfd.blur_files import recipe_record, recipe_text, write_recipe
from smfd.images import resize_to, write_png

from . import examples, render
from .context import AppContext
from .errors import shown_to_user
from .face import Face, safe_stem
from .uploads import FULL_SIZE_PIXELS, check_pixels, checked_image

KERNEL_SIZES = (3, 5, 7, 9, 11, 15, 21, 25, 31, 35, 41, 51, 61)
LAYER_CHOICES = (1, 2, 3, 4, 5)


def options_from(layers, sequences, gaussian_sizes, motion_sizes, directions, scale_lo, scale_hi,
                 noise_lo, noise_hi, blur_on, rescale_on, noise_on, jpeg_on=False,
                 jpeg_lo=degrade.PipelineOptions.jpeg_range[0], jpeg_hi=degrade.PipelineOptions.jpeg_range[1],
                 jpeg_share=degrade.PipelineOptions.jpeg_share) -> degrade.PipelineOptions:
    """The UI's values as PipelineOptions; raises ValueError naming a bad combination."""
    options = degrade.PipelineOptions(  # which puts them in its own order, as `smfd blur` does
        layers=[int(n) for n in layers], sequences=list(sequences), gaussian_sizes=[int(k) for k in gaussian_sizes],
        motion_sizes=[int(k) for k in motion_sizes], directions=list(directions),
        scale_range=(float(scale_lo), float(scale_hi)), noise_range=(float(noise_lo), float(noise_hi)),
        blur=bool(blur_on), rescale=bool(rescale_on), noise=bool(noise_on), jpeg=bool(jpeg_on),
        jpeg_range=(int(jpeg_lo), int(jpeg_hi)), jpeg_share=float(jpeg_share))
    if options.changes_nothing:
        raise ValueError(examples.NOTHING_DEGRADED)
    return options


def count_text(*values) -> str:
    try:
        options = options_from(*values)
    except ValueError as exc:
        return f"**These options do not make a pipeline:** {exc}"
    c = degrade.count_scenarios(options)
    parts = [f"{c.blur:,} blur combinations ({c.per_layer:,} per layer)" if options.blur else "no blur",
             f"{c.scales} scales" if options.rescale else "no rescaling",
             f"{c.noise_levels} noise levels" if options.noise else "no noise"]
    if options.jpeg:  # (the share left uncompressed counts as one more "quality")
        parts.append(f"{c.jpeg_qualities} JPEG qualities")
    return (f"### {c.total:,} scenarios\n{' x '.join(parts)} (scale and noise counted in steps of "
            f"{options.count_step}; the Learn tab shows how the thesis' count arises)")


def source_size(image: np.ndarray) -> np.ndarray:
    """Scale so that the longer side is 512: the thesis' kernel sizes are meant for 512x512 faces."""
    h, w = image.shape[:2]
    scale = examples.SOURCE_SIZE / max(h, w)
    return resize_to(image, (max(8, round(w * scale)), max(8, round(h * scale))))


def blur_lab(ctx: AppContext, image, resize, source, seed, *option_values):
    if image is None:
        raise gr.Error("Upload a sharp face or pick an example first.")
    try:
        options = options_from(*option_values)
    except ValueError as exc:
        raise gr.Error(str(exc), title="Pipeline options") from None
    with shown_to_user():
        seed = examples.seed_from(seed)
    name, truth = source or (getattr(image, "file_name", "upload"), None)
    if not resize:
        check_pixels(image.shape[1], image.shape[0], FULL_SIZE_PIXELS,
                     "the blur lab at full size (tick 'Scale to 512 px first', or use `smfd blur`)", name)
    sharp = source_size(image) if resize else image
    blurry, recipe = examples.blurred(sharp, seed, name, options)
    record = recipe_record(recipe, options, seed, name)
    folder, stem = ctx.output_dir(), f"{safe_stem(name)}_seed{seed}"
    files = [str(write_png(folder / f"{stem}_blurred.png", blurry)),
             str(write_recipe(folder / f"{stem}_recipe.json", record))]
    # The recipe replays on the face it was drawn on: where the user has no file of it (scaled, or
    # an example, which is loaded at 512 px), the lab gives it.
    if sharp.shape != image.shape or source is not None:
        files.append(str(write_png(folder / f"{stem}_sharp_{sharp.shape[1]}x{sharp.shape[0]}.png", sharp)))
    text = recipe_text(record)
    face = Face(f"{name} (blur lab, seed {seed})", blurry, sharp, origin=name)
    if truth is not None:
        with shown_to_user():  # a mask that does not fit the picture
            face = face.with_truth(truth)
    summary = f"**Recipe:** {recipe.describe()}"
    return blurry, render.kernels_picture(recipe), summary, text, files, face


def load_example(ctx: AppContext, name: str):
    if not name:
        return gr.skip(), gr.skip()
    with shown_to_user():  # e.g. a corrupt file in the --examples folder
        example = ctx.example(name)
        image, truth = example.load()
    return image, (example.stem, truth)


def build(ctx: AppContext) -> SimpleNamespace:
    d = degrade.PipelineOptions()
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = checked_image(label="Sharp face", value=examples.astronaut_face(), elem_id="blur-source")
            example = gr.Dropdown([e.name for e in ctx.examples], value=None, label="Example faces",
                                  filterable=True, elem_id="blur-example")
            resize = gr.Checkbox(True, label="Scale to 512 px first (the kernel sizes are meant for 512x512 faces)")
            source = gr.State((examples.BUILTIN_STEM, None))
        with gr.Column(scale=2):
            with gr.Row():
                blur_on = gr.Checkbox(d.blur, label="1. Heavy blur", elem_id="blur-on")
                rescale_on = gr.Checkbox(d.rescale, label="2. Down- and up-scaling", elem_id="rescale-on")
                noise_on = gr.Checkbox(d.noise, label="3. Gaussian noise", elem_id="noise-on")
                jpeg_on = gr.Checkbox(d.jpeg, label="4. JPEG compression (not in the thesis)", elem_id="jpeg-on")
            layers = gr.CheckboxGroup(list(LAYER_CHOICES), value=list(d.layers), label="Number of blur layers (drawn uniformly)",
                                      elem_id="blur-layers")
            sequences = gr.CheckboxGroup(list(degrade.SEQUENCES), value=list(d.sequences),
                                         label="Sequences per layer (G = Gaussian, M = motion)", elem_id="blur-sequences")
            gaussian_sizes = gr.CheckboxGroup(list(KERNEL_SIZES), value=list(d.gaussian_sizes),
                                              label="Gaussian kernel sizes", elem_id="blur-gaussian")
            motion_sizes = gr.CheckboxGroup(list(KERNEL_SIZES), value=list(d.motion_sizes),
                                            label="Motion kernel sizes", elem_id="blur-motion")
            directions = gr.CheckboxGroup(list(degrade.DIRECTIONS), value=list(d.directions),
                                          label="Motion directions", elem_id="blur-directions")
            with gr.Row():
                scale_lo = gr.Slider(1.0, 8.0, d.scale_range[0], step=0.1, label="Down-scaling from")
                scale_hi = gr.Slider(1.0, 8.0, d.scale_range[1], step=0.1, label="to")
            with gr.Row():
                noise_lo = gr.Slider(0.0, 50.0, d.noise_range[0], step=0.1, label="Noise sigma from (0..255 scale)")
                noise_hi = gr.Slider(0.0, 50.0, d.noise_range[1], step=0.1, label="to")
            with gr.Row():
                jpeg_lo = gr.Slider(1, 100, d.jpeg_range[0], step=1, label="JPEG quality from")
                jpeg_hi = gr.Slider(1, 100, d.jpeg_range[1], step=1, label="to")
                jpeg_share = gr.Slider(0.05, 1.0, d.jpeg_share, step=0.05, label="Share of faces compressed")
            option_inputs = [layers, sequences, gaussian_sizes, motion_sizes, directions, scale_lo,
                             scale_hi, noise_lo, noise_hi, blur_on, rescale_on, noise_on, jpeg_on,
                             jpeg_lo, jpeg_hi, jpeg_share]
            count = gr.Markdown(count_text(*[c.value for c in option_inputs]), elem_id="blur-count")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, maximum=examples.SEEDS - 1, label="Seed",
                                 elem_id="blur-seed")
                new_seed = gr.Button("New seed", size="sm")
                run = gr.Button("Blur", variant="primary", elem_id="blur-run")
    with gr.Row():
        blurry = gr.Image(label="Blurry result", format="png", interactive=False, elem_id="blur-result",
                          scale=1)
        with gr.Column(scale=2):
            kernels = gr.Image(label="Kernels and effective point-spread function", format="png",
                               interactive=False, elem_id="blur-kernels")
            summary = gr.Markdown()
            recipe_file = gr.File(label="Download the blurred face and its recipe ('smfd blur SHARP OUT --recipe FILE' replays it; "
                                        "SHARP: the face scaled to 512 px, given with it when the lab scaled it)",
                                  file_count="multiple", elem_id="blur-recipe-file")
            send = gr.Button("Send to restore", elem_id="blur-send", interactive=False)
    with gr.Accordion("Recipe as JSON", open=False):
        recipe = gr.Code(language="json", max_lines=30, elem_id="blur-recipe", show_label=False)
    lab_face = gr.State(None)

    for c in option_inputs:
        c.change(count_text, option_inputs, count, api_visibility="private", show_progress="hidden",
                 queue=False)
    # A new face: no result of the face before stays beside it, to be sent. Cleared in the model's
    # queue, after any Blur run queued or running for the face before.
    results = [blurry, kernels, summary, recipe, recipe_file, lab_face, send]
    after_runs = dict(api_visibility="private", concurrency_id="model")
    stale = lambda: (None, None, "", "", None, None, gr.Button(interactive=False))  # noqa: E731
    # .input, not .change: the upload below empties the box, which must not load anything
    example.input(partial(load_example, ctx), example, [image, source], api_visibility="private").success(
        stale, None, results, **after_runs)
    # the upload is named by itself, and the example box no longer names the face shown
    image.upload(lambda: (None, None, *stale()), None, [example, source, *results], **after_runs)
    image.clear(stale, None, results, **after_runs)
    new_seed.click(lambda: int(np.random.default_rng().integers(examples.SEEDS)), None, seed,
                   api_visibility="private", queue=False)
    run.click(partial(blur_lab, ctx), [image, resize, source, seed, *option_inputs],
              [blurry, kernels, summary, recipe, recipe_file, lab_face], api_visibility="private",
              concurrency_id="model").success(lambda: gr.Button(interactive=True), None, send,
                                           api_visibility="private", queue=False)
    return SimpleNamespace(send=send, lab_face=lab_face)
