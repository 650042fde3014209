"""Benchmark of the shipped model on held-out faces under the protocol of SPEC section 2.

    .venv/bin/python scripts/benchmark_model.py [--data DIR] [--weights DIR] [--faces N] [--seed 0]
        [--engines auto|pytorch|openvino|openvino-int8 ...] [--colour-sigmas PX ...] [--split test|val]
        [--json OUT.json] [--per-face OUT.csv] [--jpeg LOW HIGH [--jpeg-at source|crop]]

DIR defaults to celebamask_mini of the shared data ($SMFD_SHARED_DATA, else ../shared/data beside
the project folder).

Faces: the test split of the dataset (smfd.data.select(..., "test")), which no training run sees;
``--split val``: the validation faces of the training runs (fold 0), for choosing a setting
without looking at the test faces.
Each face is degraded at 512x512 with a recipe drawn from (seed, face id), then the blurry image and
the sharp target are resized to 256x256 with INTER_AREA. Prints, for the blurry input, SMFD with
generated masks and SMFD with ground-truth masks: PSNR, SSIM, identity (dlib's descriptor distance
to the sharp face, the box found once on the sharp face and reused: the share of faces under
dlib's same-person threshold 0.6, and the mean), MSE, the mean colour shift (mean absolute
difference of per-channel means, 0..255 levels), the local colour error (the same after a 16 px
Gaussian blur of the difference: shading and colour errors of face regions) and the background
speckle rate; and the mask generator's Dice/Jaccard per group (dataset-level pixel counts) and their
mean. SMFD runs through Restorer.restore_face, the path of every caller, which keeps the input's
colours at scales wider than COLOUR_SIGMA px (``--colour-sigmas``: other widths, 0 for the network's
own colours, each on the same restorations); with several --engines, each on the same faces.
``--per-face`` writes every face's figures (the first engine's, at the first colour width, which
its ``colour_sigma`` column records), with the per-group Dice of its generated mask, for finding
which faces lose identity. ``--jpeg LOW HIGH`` adds the pipeline's JPEG stage to every face (a quality
drawn from LOW..HIGH after the thesis' stages, whose draws stay the same), which the thesis protocol
leaves out: how a model copes with compressed photos. The stage compresses the 512x512 face, as in
training with ``--preset real``, before it is halved; ``--jpeg-at crop`` compresses the 256x256 face
instead (as ``--preset real-crop`` does), at the same drawn quality, so that the 8x8 blocks are
those of a compressed photo's face.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter
from tqdm import tqdm

from smfd import data, degrade, metrics
from smfd.batch import check_new_file
from smfd.cli import add_face_set_options, face_set, int_from, number_in, run_reported, script_parser
from smfd.identity import SAME_PERSON, geometry
from smfd.images import write_atomically
from smfd.labels import GROUPS
from smfd.restorer import COLOUR_SIGMA, Restorer, with_input_colours



def speckle_rate(image: np.ndarray, background: np.ndarray, threshold: float = 40.0) -> float:
    """Share of background pixels that stand out from their 5x5 neighbourhood's median by more
    than ``threshold`` levels in some channel: isolated stray (coloured) pixels."""
    if not background.any():
        return 0.0
    x = image.astype(np.float32)
    med = median_filter(x, size=(5, 5, 1), mode="reflect")
    outlier = np.abs(x - med).max(-1) > threshold
    return float(outlier[background].mean())


def main() -> None:
    parser = script_parser(__doc__)
    add_face_set_options(parser, engine=False)
    parser.add_argument("--engines", nargs="+", default=["auto"],
                        help="auto, pytorch, openvino, openvino-int8: several are compared on the same faces")
    parser.add_argument("--colour-sigmas", nargs="+", type=number_in(0, 256), default=[COLOUR_SIGMA], metavar="PX",
                        help=f"keep the input's colours at scales wider than PX at 256x256 (default {COLOUR_SIGMA:g}, "
                             "the restorer's), 0: the network's own colours; several are compared")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--per-face", default=None,
                        help="also write every face's figures (first engine, first colour width) to this CSV file")
    parser.add_argument("--jpeg", nargs=2, type=int_from(1), default=None, metavar=("LOW", "HIGH"),
                        help="also JPEG-compress every degraded face at a quality drawn from LOW..HIGH (1-100)")
    parser.add_argument("--jpeg-at", choices=degrade.JPEG_AT, default="source",
                        help="with --jpeg: compress the 512x512 face before the resize (source, as the training "
                             "preset does) or the 256x256 face the model reads (crop)")
    args = parser.parse_args()
    try:
        options = (degrade.PipelineOptions(jpeg=True, jpeg_range=tuple(args.jpeg), jpeg_at=args.jpeg_at)
                   if args.jpeg else degrade.PipelineOptions())
    except ValueError as exc:
        parser.error(f"--jpeg: {exc}")
    if args.jpeg_at == "crop" and not args.jpeg:
        parser.error("--jpeg-at crop needs --jpeg LOW HIGH (the qualities to draw from)")
    for path, option in ((args.json, "--json"), (args.per_face, "--per-face")):
        if path:  # named before the faces are restored, not after
            check_new_file(path, option)
    if args.json and args.per_face and Path(args.json).resolve() == Path(args.per_face).resolve():
        parser.error(f"--json and --per-face name one file ({args.per_face}): the figures would replace the faces'")

    records = face_set(args)
    restorers = {e: Restorer.from_pretrained(args.weights, args.device, e) for e in args.engines}
    variants = [(e, sigma) for e in args.engines for sigma in args.colour_sigmas]

    def label(engine: str, sigma: float) -> str:
        """The row's engine among several, and its colour width unless it is the only one and the restorer's."""
        parts = [engine] if len(variants) > 1 else []
        if len(args.colour_sigmas) > 1 or sigma != COLOUR_SIGMA:
            parts.append(f"colours {sigma:g} px" if sigma else "raw colours")
        return f" [{', '.join(parts)}]" if parts else ""

    def coloured(restored: np.ndarray, blurry: np.ndarray, sigma: float) -> np.ndarray:
        return with_input_colours(restored, blurry, sigma) if sigma else restored

    names = ["blurry input"] + [f"SMFD, {kind} masks{label(e, k)}" for e, k in variants
                                for kind in ("generated", "ground-truth")] + ["sharp target"]
    # --per-face columns: the input, the first engine's two rows at the first width, the target
    prefixes = dict(zip([*names[:3], names[-1]], ("input", "generated", "truth", "target")))
    for e, r in restorers.items():
        print(f"engine {e}: {r.engine.describe()}")
    rows = {name: {"psnr": [], "ssim": [], "id_dist": [], "mse": [], "colour_shift": [], "local_colour": [],
                   "speckles": []} for name in names}
    segs = {e: metrics.SegmentationScore(len(GROUPS)) for e in args.engines}
    faces = []
    for record in tqdm(records, desc="benchmark", unit="face"):
        blurry, sharp, groups, _ = data.benchmark_pair(record, args.seed, options=options)
        outputs = {"blurry input": blurry}
        for e in args.engines:  # each engine restores once; the colour widths post-process that
            generated = restorers[e].restore_face(blurry, keep_colours=False)
            truth = restorers[e].restore(blurry, groups, keep_colours=False)
            segs[e].add(generated.groups, groups)
            if e == args.engines[0]:
                first = generated.groups
            for sigma in args.colour_sigmas:
                outputs[f"SMFD, generated masks{label(e, sigma)}"] = coloured(generated.image, blurry, sigma)
                outputs[f"SMFD, ground-truth masks{label(e, sigma)}"] = coloured(truth, blurry, sigma)
        outputs["sharp target"] = sharp
        distances = geometry().distances(list(outputs.values()), sharp)
        face = {"id": record.id, "colour_sigma": args.colour_sigmas[0]}
        for (name, out), dist in zip(outputs.items(), distances):
            row = rows[name]
            row["psnr"].append(metrics.psnr(out, sharp))
            row["ssim"].append(metrics.ssim(out, sharp))
            row["id_dist"].append(dist)
            row["mse"].append(metrics.mse(out, sharp))
            row["colour_shift"].append(metrics.mean_colour_shift(out, sharp))
            row["local_colour"].append(metrics.local_colour_error(out, sharp))
            row["speckles"].append(speckle_rate(out, groups == 0))
            if name in prefixes:
                key = prefixes[name]
                face.update({f"{key}_psnr": row["psnr"][-1], f"{key}_ssim": row["ssim"][-1], f"{key}_id_dist": dist})
        face.update({f"dice_{g}": d for g, d in zip(GROUPS, metrics.dice(first, groups))})
        faces.append(face)

    summary = {name: {k: float(np.mean(v)) for k, v in row.items()} for name, row in rows.items()}
    for name, row in rows.items():
        summary[name]["same_person"] = float(np.mean(np.array(row["id_dist"]) < SAME_PERSON))
    jpeg = f", JPEG quality {args.jpeg[0]}-{args.jpeg[1]} on the {args.jpeg_at}" if args.jpeg else ""
    print(f"\n{len(records)} {'held-out' if args.split == 'test' else 'validation'} faces from {args.data} "
          f"({args.split} split), seed {args.seed}{jpeg}\n")
    width = max(map(len, names))
    print(f"| {'method':{width}s} | PSNR dB | SSIM   | same person | id distance | MSE    | colour shift "
          "| local colour | bg speckles |")
    print(f"|{'-' * (width + 2)}|---------|--------|-------------|-------------|--------|--------------"
          "|--------------|-------------|")
    for name, s in summary.items():
        psnr = "inf" if name == "sharp target" else f"{s['psnr']:.3f}"
        print(f"| {name:{width}s} | {psnr:>7s} | {s['ssim']:.4f} | {s['same_person'] * 100:10.1f}% | {s['id_dist']:11.4f} "
              f"| {s['mse']:6.1f} | {s['colour_shift']:12.2f} | {s['local_colour']:12.2f} | {s['speckles'] * 100:10.3f}% |")
    blurry, generated, truth = (np.array(rows[m]["id_dist"]) for m in names[:3])
    print(f"\nfaces whose identity distance grows against the blurry input: generated masks "
          f"{int((generated > blurry).sum())} of {len(records)}, ground-truth masks {int((truth > blurry).sum())}")
    for e, seg in segs.items():
        dice, jaccard = seg.dice(), seg.jaccard()
        print(f"\nmask generator, engine {e} (dataset-level, per group):")
        for g, name in enumerate(GROUPS):
            print(f"  {name:13s} Dice {dice[g]:.4f}  Jaccard {jaccard[g]:.4f}")
        print(f"  {'mean':13s} Dice {seg.mean_dice():.4f}  Jaccard {seg.mean_jaccard():.4f}")
    if args.per_face:  # write_atomically makes the folder too, which check_new_file left to be made

        def write_rows(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(faces[0]))
                writer.writeheader()
                writer.writerows(faces)

        write_atomically(args.per_face, write_rows, ".csv")
    if args.json:
        summary.pop("sharp target")
        seg = segs[args.engines[0]]
        dice, jaccard = seg.dice(), seg.jaccard()
        result = {"faces": len(records), "split": args.split, "seed": args.seed, "colour_sigmas": args.colour_sigmas, "jpeg": args.jpeg, "jpeg_at": args.jpeg_at if args.jpeg else None,
                  "engines": {e: r.engine.describe() for e, r in restorers.items()}, "restoration": summary,
                  "mask": {"dice": dict(zip(GROUPS, map(float, dice))), "jaccard": dict(zip(GROUPS, map(float, jaccard))),
                           "mean_dice": seg.mean_dice(), "mean_jaccard": seg.mean_jaccard()}}
        write_atomically(args.json, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"), ".json")


if __name__ == "__main__":
    sys.exit(run_reported(main))
