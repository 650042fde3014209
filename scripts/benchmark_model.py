"""Benchmark of the shipped model on held-out faces under the protocol of SPEC section 2.

    .venv/bin/python scripts/benchmark_model.py [--data DIR] [--weights DIR] [--faces N] [--seed 0]
        [--engines auto|pytorch|openvino|openvino-int8 ...] [--raw-colours] [--identity] [--json OUT.json]

DIR defaults to celebamask_mini of the shared data ($SMFD_SHARED_DATA, else ../shared/data beside
the project folder).

Faces: the test split of the dataset (smfd.data.select(..., "test")), which no training run sees.
Each face is degraded at 512x512 with a recipe drawn from (seed, face id), then the blurry image and
the sharp target are resized to 256x256 with INTER_AREA. Prints, for the blurry input, SMFD with
generated masks and SMFD with ground-truth masks: PSNR, SSIM, MSE, the mean colour shift (mean
absolute difference of per-channel means, 0..255 levels) and the background speckle rate; with
--identity also dlib's identity distance to the sharp face (SPEC section 2: mean descriptor
distance and the share under 0.6); and the mask generator's Dice/Jaccard per group (dataset-level
pixel counts) and their mean. SMFD runs through Restorer.restore_face, the path of every caller
(--raw-colours: also without keeping the input's colours); with several --engines, each on the
same faces.
"""

import argparse
import json

import numpy as np
from scipy.ndimage import median_filter
from tqdm import tqdm

from smfd import data, metrics
from smfd.labels import GROUPS
from smfd.paths import shared_data
from smfd.restorer import Restorer


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(shared_data() / "celebamask_mini"))
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--faces", type=int, default=None, help="use only the first N test faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engines", nargs="+", default=["auto"],
                        help="auto, pytorch, openvino, openvino-int8: several are compared on the same faces")
    parser.add_argument("--raw-colours", action="store_true", help="also without keeping the input's colours")
    parser.add_argument("--identity", action="store_true", help="also dlib's identity distance")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    records = [r for r in data.select(data.open_dataset(args.data), "test") if r.has_mask]
    records = records[: args.faces] if args.faces else records
    restorers = {e: Restorer.from_pretrained(args.weights, args.device, e) for e in args.engines}
    variants = [(e, keep) for e in args.engines for keep in ((True, False) if args.raw_colours else (True,))]

    def label(engine: str, keep: bool) -> str:
        if len(variants) == 1:
            return ""
        return f" [{engine}{'' if keep else ', raw colours'}]"

    names = ["blurry input"] + [f"SMFD, {kind} masks{label(e, k)}" for e, k in variants
                                for kind in ("generated", "ground-truth")] + ["sharp target"]
    for e, r in restorers.items():
        print(f"engine {e}: {r.engine.describe()}")
    keys = ["psnr", "ssim", "mse", "colour_shift", "speckles"] + (["id_distance", "same_id"] if args.identity else [])
    rows = {name: {k: [] for k in keys} for name in names}
    if args.identity:
        from eval.identity import geometry

        faces = geometry()
    segs = {e: metrics.SegmentationScore(len(GROUPS)) for e in args.engines}
    for record in tqdm(records, desc="benchmark", unit="face"):
        blurry, sharp, groups, _ = data.benchmark_pair(record, args.seed)
        outputs = {"blurry input": blurry, "sharp target": sharp}
        for e, keep in variants:
            generated = restorers[e].restore_face(blurry, keep_colours=keep)
            if keep:
                segs[e].add(generated.groups, groups)
            outputs[f"SMFD, generated masks{label(e, keep)}"] = generated.image
            outputs[f"SMFD, ground-truth masks{label(e, keep)}"] = restorers[e].restore(blurry, groups,
                                                                                         keep_colours=keep)
        if args.identity:
            box = faces.face_box(sharp)  # found once on the sharp face, reused for every candidate
            target = faces.embedding(sharp, box)
        for name, out in outputs.items():
            row = rows[name]
            row["psnr"].append(metrics.psnr(out, sharp))
            row["ssim"].append(metrics.ssim(out, sharp))
            row["mse"].append(metrics.mse(out, sharp))
            row["colour_shift"].append(metrics.mean_colour_shift(out, sharp))
            row["speckles"].append(speckle_rate(out, groups == 0))
            if args.identity:
                distance = float(np.linalg.norm(faces.embedding(np.ascontiguousarray(out), box) - target))
                row["id_distance"].append(distance)
                row["same_id"].append(distance < 0.6)

    summary = {name: {k: float(np.mean(v)) for k, v in row.items()} for name, row in rows.items()}
    print(f"\n{len(records)} held-out faces from {args.data} (test split), seed {args.seed}\n")
    width = max(map(len, names))
    identity = " id distance | same id (< 0.6) |" if args.identity else ""
    print(f"| {'method':{width}s} | PSNR dB | SSIM   | MSE    | colour shift | bg speckles |{identity}")
    print(f"|{'-' * (width + 2)}|---------|--------|--------|--------------|-------------|"
          + ("-------------|-----------------|" if args.identity else ""))
    for name, s in summary.items():
        psnr = "inf" if name == "sharp target" else f"{s['psnr']:.3f}"
        ids = f" {s['id_distance']:11.4f} | {s['same_id'] * 100:14.1f}% |" if args.identity else ""
        print(f"| {name:{width}s} | {psnr:>7s} | {s['ssim']:.4f} | {s['mse']:6.1f} | {s['colour_shift']:12.2f} "
              f"| {s['speckles'] * 100:10.3f}% |{ids}")
    for e, seg in segs.items():
        dice, jaccard = seg.dice(), seg.jaccard()
        print(f"\nmask generator, engine {e} (dataset-level, per group):")
        for g, name in enumerate(GROUPS):
            print(f"  {name:13s} Dice {dice[g]:.4f}  Jaccard {jaccard[g]:.4f}")
        print(f"  {'mean':13s} Dice {seg.mean_dice():.4f}  Jaccard {seg.mean_jaccard():.4f}")
    if args.json:
        summary.pop("sharp target")
        seg = next(iter(segs.values()))
        dice, jaccard = seg.dice(), seg.jaccard()
        result = {"faces": len(records), "seed": args.seed, "restoration": summary,
                  "mask": {"dice": dict(zip(GROUPS, map(float, dice))), "jaccard": dict(zip(GROUPS, map(float, jaccard))),
                           "mean_dice": seg.mean_dice(), "mean_jaccard": seg.mean_jaccard()}}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
