"""Learn: what the two networks see layer by layer, how the scenario count arises, and what each
ablation of thesis table 4.3 changes."""

from __future__ import annotations

import math
from functools import cache, partial
from types import SimpleNamespace

import gradio as gr

from eval.thesis import THESIS_43
from smfd import degrade
from smfd.models import ABLATIONS, SMFDConfig, SMFDNet, count_parameters

from . import examples, features
from .context import AppContext
from .errors import shown_to_user
from .face import Face

THESIS_TOTAL = 1_743_940_018_728  # as printed in the thesis (section 3.4.1)

# What each row of thesis table 4.3 adds to the row above.
ABLATION_NOTES = {
    "no-mask": "image branch only: no mask encoder, nearest-neighbour upsampling with raw skips, "
               "no post-processing",
    "plain-upsampling": "+ the mask branch, fused with the image branch at every encoder stage",
    "attention-transpose": "+ attention upsampling: a transposed convolution for the deep "
                           "features, CBAM on the skip",
    "attention-pixelshuffle": "PixelShuffle instead of the transposed convolution (after a 3x3 convolution, "
                              "as the thesis draws it: 2.5x the parameters and 1.6x the MACs of the row above)",
    "full": f"+ post-processing: out = (out - mean) x {SMFDConfig.contrast} + mean + "
            f"{SMFDConfig.brightness} (the thesis design; the shipped network is leaner and adds its output to "
            "the input, so the block scales that correction: see the model card)",
}


def count_explained(options: degrade.PipelineOptions = degrade.PipelineOptions()) -> str:
    """The thesis' scenario count, derived step by step with count_scenarios."""
    c = degrade.count_scenarios(options)
    g, m = len(options.gaussian_sizes), len(options.motion_sizes) * len(options.directions)
    choices = {"G": g, "M": m}
    rows = []
    for name in options.sequences:
        ops = degrade.SEQUENCES[name]
        rows.append(f"| {name} | {' x '.join(str(choices[op]) for op in ops)} | "
                    f"{math.prod(choices[op] for op in ops):,} |")
    powers = " + ".join(f"{c.per_layer:,}^{n}" if n > 1 else f"{c.per_layer:,}" for n in sorted(set(options.layers)))
    terms = " + ".join(f"{c.per_layer ** n:,}" for n in sorted(set(options.layers)))
    slip = ""
    if options == degrade.PipelineOptions():
        slip = (f"\n\nThe thesis prints **{THESIS_TOTAL:,}** after three arithmetic slips: it writes "
                f"1,176^3 as 1,626,943,776 (it is {1176 ** 3:,}), the sum of its three terms as "
                f"1,628,328,728 (they add up to {1176 + 1176 ** 2 + 1626943776:,}), and 1,628,328,728 x "
                f"{c.scales * c.noise_levels:,} is {1628328728 * c.scales * c.noise_levels:,}, not its total. "
                f"The blur combinations are {c.blur:,} and the total is **{c.total:,}**, still about "
                "1.74 trillion.")
    return f"""#### How {c.total:,} degradation scenarios arise

**One blur layer** is one of the sequences; each operation offers its own choices:
a Gaussian blur has {g} kernel sizes, a motion blur {len(options.motion_sizes)} sizes x
{len(options.directions)} directions = {m}.

| sequence | choices per operation | combinations |
|---|---|---|
{chr(10).join(rows)}
| **per layer** | | **{c.per_layer:,}** |

**Stacking layers**: a photo gets n layers, n in {{{", ".join(map(str, sorted(set(options.layers))))}}}, so the blur
stage has {powers} = {terms} = **{c.blur:,}** combinations.

**Scale and noise** are continuous; counted in steps of {options.count_step}, the down-scaling
factor {options.scale_range[0]}..{options.scale_range[1]} takes {c.scales} values and the noise
sigma {options.noise_range[0]}..{options.noise_range[1]} takes {c.noise_levels}.

**Total**: {c.blur:,} x {c.scales} x {c.noise_levels} = **{c.total:,}** scenarios.{slip}"""


@cache
def ablation_rows() -> list[list]:
    rows = []
    for name, overrides in ABLATIONS.items():
        params = count_parameters(SMFDNet(SMFDConfig(**overrides)))["total"]
        psnr, ssim = THESIS_43[name]
        settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(defaults)"
        rows.append([name, ABLATION_NOTES[name], settings, f"{params:,}", f"{psnr:.2f} dB / {ssim:.2f} %"])
    return rows


def feature_maps(ctx: AppContext, face: Face | None, mode: str, progress=gr.Progress()):
    if face is None:
        sharp = examples.astronaut_face()
        face = Face("astronaut, seed 0", examples.blurred(sharp, 0, examples.BUILTIN_STEM)[0], sharp)
    if face.whole_photo:
        raise gr.Error(f"{face.name} was restored as a whole photo; the networks see one aligned face: "
                       "restore it with 'Whole photo' off, or upload a crop of the face.")
    progress(0.1, desc="Mask generator")
    given = face.mask if face.mask_source in ("edited", "ground truth") else None
    with shown_to_user():
        masks = features.gallery(features.mask_generator_maps(ctx.restorer, face.blurry), mode)
        progress(0.5, desc="SMFD-UNet")
        smfd = features.gallery(features.smfd_maps(ctx.restorer, face.blurry, given), mode)
    return f"Feature maps of **{face.name}**, with the {face.mask_source or 'generated'} mask.", masks, smfd


def build(ctx: AppContext, face: gr.State) -> SimpleNamespace:
    gr.Markdown("### Inside the networks (as thesis figures 4.5 and 4.6)\n"
                "Every stage's output for the current face (or the astronaut when none is loaded). "
                "3 channels are shown as RGB, 5 channels by argmax in the group colours, other "
                "channel counts by their first channel or their mean. Each network is shown in one pass over the "
                "face as it is; a restoration averages it with the pass over the mirror image.")
    with gr.Row():
        mode = gr.Radio(list(features.MODES), value=features.MODES[0], label="Many channels", scale=2)
        run = gr.Button("Show the feature maps", variant="primary", elem_id="learn-run", scale=1)
    which = gr.Markdown()
    mask_maps = gr.Gallery(label="Mask generator, layer by layer", columns=8, format="png",
                           height=360, elem_id="learn-mask-maps")
    smfd_maps = gr.Gallery(label="SMFD-UNet, layer by layer", columns=8, format="png",
                           height=520, elem_id="learn-smfd-maps")
    run.click(partial(feature_maps, ctx), [face, mode], [which, mask_maps, smfd_maps],
              api_visibility="private", concurrency_id="model")
    gr.Markdown(count_explained(), elem_id="learn-count")
    gr.Markdown("#### The ablations of thesis table 4.3\nEach row adds one thing to the row above; "
                "`smfd train deblur --ablation NAME` trains it.")
    gr.Dataframe(ablation_rows(), headers=["variant", "what changes", "config", "parameters",
                                           "thesis PSNR / SSIM"], interactive=False, wrap=True,
                 column_widths=["15%", "38%", "22%", "11%", "14%"], elem_id="learn-ablations")
    return SimpleNamespace()
