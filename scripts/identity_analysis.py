"""Why does a restoration lose the person's identity? Mask interventions on held-out faces.

    .venv/bin/python scripts/identity_analysis.py [--weights DIR] [--faces N] [--seed 0]
        [--warp 4,8,12] [--residual 0.5,0.75] [--figure FILE.png]

On the test split under the benchmark protocol (SPEC section 2), each face is restored by the same
SMFD-UNet with different masks, and dlib's descriptor distance to the sharp face is measured (the
box found once on the sharp face):

* ground truth, and the mask generator's mask as the network takes it (the mirror-averaged
  probabilities for a ``soft_mask`` network, else their argmax);
* the generated mask's argmax fed one-hot ("generated, one-hot"), and that mask with one group
  corrected: every pixel whose true or generated group is that group takes its true value (facial
  parts; face skin; hair) -- the share of the identity loss that each group's errors cause, read
  against the one-hot row (a ``soft_mask`` network's own row is fed probabilities, which alone
  moves the distance);
* the mask generator's probabilities fed as they are, even to a network trained on one-hot masks,
  and with the facial-parts probability added to face skin (``generated_parts=false``);
* no mask information: every pixel "face skin" -- how much the network relies on the mask;
* with ``--warp A,...``: the true mask (one-hot) warped by a smooth random displacement of at most
  A pixels, and its facial-parts Dice -- how close to the true part shapes a mask must be;
* with ``--residual F,...``: the generated-mask restoration's change to the blurry face scaled by
  F (blurry + F x (restored - blurry)) -- whether the network changes a face more than its
  identity bears.

It prints each variant's mean distance, same-person share and PSNR beside the blurry input's,
the same by thirds of the blurry input's PSNR (how heavily each face was degraded), the faces
whose distance grows most with the generated mask, and how the identity loss follows the
facial-parts Dice and the semantic error (what ``smfd train --semantic`` trains against: the mask
generator's cross-entropy on the restored face against the true mask; here mirror-averaged, on
the face as every caller gets it). ``--figure`` shows those faces: sharp, blurry, both masks, both
restorations (``scripts/identity_figure.py`` shows such faces beside another model's restorations).
"""

import argparse
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

from smfd import data, labels, metrics
from smfd.batch import check_replaced_file
from smfd.cli import add_face_set_options, face_set, int_from, run_reported, script_parser
from smfd.identity import SAME_PERSON, geometry
from smfd.images import to_uint8, write_figure
from smfd.models import SMFDConfig, generated_mask_input
from smfd.restorer import Restorer, with_input_colours
from smfd.runtime import torch_threads

GROUP_FIXES = {"facial parts fixed": 2, "face skin fixed": 1, "hair fixed": 3}


def with_group_fixed(generated: np.ndarray, truth: np.ndarray, group: int) -> np.ndarray:
    out = generated.copy()
    wrong = (truth == group) | (generated == group)
    out[wrong] = truth[wrong]
    return out


def parts_as_skin(probabilities: np.ndarray) -> np.ndarray:
    """HxWx5 probabilities as a ``generated_parts=false`` network takes them (the library's path)."""
    mask = generated_mask_input(SMFDConfig(soft_mask=True, generated_parts=False),
                                torch.from_numpy(probabilities).permute(2, 0, 1)[None])
    return mask[0].permute(1, 2, 0).numpy()


def warped(mask: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` moved by a smooth random displacement whose components reach +-``amplitude``
    pixels: normal noise on a 6x6 grid, upsampled bicubically (a few bumps across the face)."""
    h, w = mask.shape
    grid = np.mgrid[0:h, 0:w][::-1].astype(np.float32)
    for c in range(2):
        field = cv2.resize(rng.standard_normal((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grid[c] += amplitude * field / max(np.abs(field).max(), 1e-6)
    return cv2.remap(mask, grid[0], grid[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def deblur(restorer: Restorer, blurry: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SMFD-UNet on a 256x256 face with a label map (one-hot) or 256x256x5 probabilities (fed as
    they are, whatever the network was trained on), colours kept as every caller does."""
    m = (restorer.mask_tensor(mask) if mask.ndim == 2
         else torch.from_numpy(mask).permute(2, 0, 1)[None].to(restorer.device))
    with torch_threads(restorer.engine.torch_threads):
        out = restorer.engine.deblur(restorer.work_tensor(blurry), m)
    return with_input_colours(to_uint8(out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()), blurry)


def semantic_error(restorer: Restorer, image: np.ndarray, truth: np.ndarray) -> float:
    """The mask generator's cross-entropy on ``image`` against the true 5-group mask."""
    p = restorer.mask_probabilities(image)
    return float(-np.log(np.take_along_axis(p, truth[..., None].astype(np.int64), -1) + 1e-6).mean())


def comma_numbers(what: str, accept, rule: str):
    """An argparse type for comma-separated numbers: ``what`` names them when one is not a number,
    ``rule`` when one fails ``accept``."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(a) for a in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not all(accept(a) for a in values):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return values
    return parse


amplitudes = comma_numbers("numbers of pixels", lambda a: 0 <= a <= 64, "warp amplitudes must be 0-64 pixels")
factors = comma_numbers("numbers", lambda a: 0 < a <= 2, "residual factors must lie in (0, 2]")


def main() -> None:
    parser = script_parser(__doc__)
    add_face_set_options(parser, engine=False)  # always PyTorch: the variants feed the networks directly
    parser.add_argument("--warp", type=amplitudes, default=(),
                        help="comma-separated amplitudes in pixels: also restore with the true mask warped")
    parser.add_argument("--residual", type=factors, default=(),
                        help="comma-separated factors: also the generated-mask restoration's change to the "
                             "blurry face scaled by each")
    parser.add_argument("--worst", type=int_from(1), default=6, help="faces listed and shown")
    parser.add_argument("--figure", default=None, help="write a PNG of the faces that lose most identity")
    args = parser.parse_args()
    if args.figure:  # named before the faces are restored, not after
        check_replaced_file(args.figure, "--figure", (".png", ".pdf", ".svg"))
    records = face_set(args)
    if len(records) < 3:
        parser.error(f"the analysis splits the faces into thirds: it needs at least 3, got {len(records)}")
    restorer = Restorer.from_pretrained(args.weights, args.device, engine="pytorch")
    warps = {f"true mask warped {a:g} px": a for a in args.warp}
    scaled = {f"generated, change x {f:g}": f for f in args.residual}
    variants = ("blurry input", "ground-truth mask", "generated mask", "generated, one-hot", *GROUP_FIXES,
                "probabilities", "probabilities, parts as skin", "no mask (all skin)", *warps, *scaled)
    dist = {v: [] for v in variants}
    psnr = {v: [] for v in variants}
    warp_dice = {v: [] for v in warps}
    parts_dice, shown = [], []
    semantic = {v: [] for v in ("blurry input", "ground-truth mask", "generated mask")}
    for index, record in enumerate(tqdm(records, desc="faces", unit="face")):
        blurry, sharp, truth, _ = data.benchmark_pair(record, args.seed)
        probs = restorer.mask_probabilities(blurry)
        generated = probs.argmax(-1).astype(np.uint8)
        outputs = {"blurry input": blurry,
                   "ground-truth mask": deblur(restorer, blurry, truth),
                   "generated mask": restorer.restore(blurry),
                   "generated, one-hot": deblur(restorer, blurry, generated)}  # what the fixes change
        for name, group in GROUP_FIXES.items():
            outputs[name] = deblur(restorer, blurry, with_group_fixed(generated, truth, group))
        outputs["probabilities"] = deblur(restorer, blurry, probs)
        outputs["probabilities, parts as skin"] = deblur(restorer, blurry, parts_as_skin(probs))
        outputs["no mask (all skin)"] = deblur(restorer, blurry, np.ones_like(truth))
        for name, a in warps.items():
            moved = warped(truth, a, np.random.default_rng([args.seed, index, int(a * 10)]))
            warp_dice[name].append(metrics.dice(moved, truth)[2])
            outputs[name] = deblur(restorer, blurry, moved)
        change = outputs["generated mask"].astype(np.float32) - blurry
        for name, f in scaled.items():
            outputs[name] = np.clip(np.rint(blurry + f * change), 0, 255).astype(np.uint8)
        for name, d in zip(outputs, geometry().distances(list(outputs.values()), sharp)):
            dist[name].append(d)
            psnr[name].append(metrics.psnr(outputs[name], sharp))
        parts_dice.append(metrics.dice(generated, truth)[2])
        for name in semantic:
            semantic[name].append(semantic_error(restorer, outputs[name], truth))
        shown.append((record.id, sharp, blurry, generated, truth, outputs["generated mask"],
                      outputs["ground-truth mask"]))

    d = {k: np.array(v) for k, v in dist.items()}
    print(f"\n{len(records)} {'held-out' if args.split == 'test' else 'validation'} faces, seed {args.seed}: "
          "dlib descriptor distance to the sharp face\n")
    print(f"| {'variant':28s} | mean distance | same person | faces further than the input | PSNR dB |")
    print(f"|{'-' * 30}|---------------|-------------|------------------------------|---------|")
    for name, v in d.items():
        worse = "" if name == "blurry input" else f"{int((v > d['blurry input']).sum())}"
        print(f"| {name:28s} | {v.mean():13.4f} | {np.mean(v < SAME_PERSON) * 100:10.1f}% | {worse:>28s} | "
              f"{np.mean(psnr[name]):7.2f} |")
    by_degradation(d, {k: np.array(v) for k, v in psnr.items()},
                   ["generated mask", "ground-truth mask", "probabilities, parts as skin", *scaled])
    for name, v in warp_dice.items():
        print(f"{name}: facial-parts Dice of the warped mask {np.mean(v):.3f}")

    loss = d["generated mask"] - d["blurry input"]
    extra = d["generated mask"] - d["ground-truth mask"]
    parts = np.array(parts_dice)
    print(f"\nidentity loss with generated masks (distance - blurry input's): mean {loss.mean():+.3f}")
    print(f"  of which the mask's errors (generated - ground truth): mean {extra.mean():+.3f}")
    print(f"  correlation of that excess with the facial-parts Dice: {np.corrcoef(extra, parts)[0, 1]:+.2f}")
    q = np.quantile(parts, [1 / 3, 2 / 3])
    for lo, hi, name in ((0, q[0], "lowest third"), (q[0], q[1], "middle third"), (q[1], 1.01, "highest third")):
        sel = (parts >= lo) & (parts < hi)
        print(f"  facial-parts Dice {name:13s} ({parts[sel].min():.2f}-{parts[sel].max():.2f}): excess "
              f"{extra[sel].mean():+.3f}, same person {np.mean(d['generated mask'][sel] < SAME_PERSON) * 100:.0f}% "
              f"generated vs {np.mean(d['ground-truth mask'][sel] < SAME_PERSON) * 100:.0f}% ground truth")
    sem = {k: np.array(v) for k, v in semantic.items()}
    print("\nsemantic error (mask generator on the face vs the true mask, cross-entropy): "
          + ", ".join(f"{k} {v.mean():.3f}" for k, v in sem.items()))
    rise = sem["generated mask"] - sem["blurry input"]
    print(f"  faces whose semantic error rises with the generated mask: {int((rise > 0).sum())} of {len(rise)}; "
          f"correlation of that rise with the identity loss: {np.corrcoef(rise, loss)[0, 1]:+.2f}")
    print(f"  correlation of the generated-mask restoration's semantic error with its distance: "
          f"{np.corrcoef(sem['generated mask'], d['generated mask'])[0, 1]:+.2f}")
    worst = np.argsort(-loss)[: args.worst]
    print(f"\nthe {len(worst)} faces whose identity moves most with the generated mask:")
    for i in worst:
        print(f"  {shown[i][0]}: blurry {d['blurry input'][i]:.3f} -> generated {d['generated mask'][i]:.3f} "
              f"(ground truth {d['ground-truth mask'][i]:.3f}, facial parts fixed "
              f"{d['facial parts fixed'][i]:.3f}); facial-parts Dice {parts[i]:.2f}")
    if args.figure:
        figure(args.figure, [shown[i] for i in worst], {k: d[k][worst] for k in d})
        print(f"\nwrote {args.figure}")


def by_degradation(dist: dict, psnr: dict, names: list[str]) -> None:
    """Identity change against the blurry input by thirds of the blurry input's PSNR: does the
    network move lightly degraded faces away from the person and heavily degraded ones towards it?"""
    base = psnr["blurry input"]
    q = np.quantile(base, [1 / 3, 2 / 3])
    thirds = [base <= q[0], (base > q[0]) & (base <= q[1]), base > q[1]]
    print("\nby thirds of the blurry input's PSNR: mean distance change against the input (faces "
          "further / faces), PSNR gain")
    heads = [f"input {base[t].min():.1f}-{base[t].max():.1f} dB" for t in thirds]
    print(f"| {'variant':28s} | " + " | ".join(f"{h:29s}" for h in heads) + " |")
    print(f"|{'-' * 30}|" + "|".join("-" * 31 for _ in thirds) + "|")
    for name in names:
        cells = []
        for t in thirds:
            change = dist[name][t] - dist["blurry input"][t]
            cells.append(f"{change.mean():+.4f} ({int((change > 0).sum())}/{int(t.sum())}), "
                         f"{(psnr[name][t] - base[t]).mean():+.2f} dB")
        print(f"| {name:28s} | " + " | ".join(f"{c:29s}" for c in cells) + " |")


def figure(path: str, rows: list, dist: dict) -> None:
    """One row per face; each restoration titled with its descriptor distance to the sharp face."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 6
    fig, axes = plt.subplots(len(rows), columns, figsize=(2 * columns, 2.15 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        face_id, sharp, blurry, generated, truth, out_gen, out_gt = row
        cells = [("sharp", sharp), (f"blurry {dist['blurry input'][r]:.2f}", blurry),
                 ("generated mask", labels.colorize(generated)), ("true mask", labels.colorize(truth)),
                 (f"with generated {dist['generated mask'][r]:.2f}", out_gen),
                 (f"with true {dist['ground-truth mask'][r]:.2f}", out_gt)]
        for c, (title, image) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(face_id[:8], fontsize=8)
    fig.suptitle("Faces whose identity moves most (dlib descriptor distance to the sharp face; < 0.6 = same person)",
                 fontsize=9)
    fig.tight_layout()
    write_figure(path, fig, 80)


if __name__ == "__main__":
    sys.exit(run_reported(main))
