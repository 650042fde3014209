"""Which CelebAMask-HQ classes make the mask generator's errors, group by group.

    .venv/bin/python scripts/mask_errors.py [--data DIR] [--weights DIR] [--engine auto|pytorch|openvino]
        [--split test|val] [--faces N] [--seed 0] [--on blurry|sharp]

The faces and degradations of ``scripts/benchmark_model.py`` (SPEC section 2: held-out test faces
by default, seed 0). The generator's 5-group map (``Restorer.mask``, the mean over the face and its
mirror image) is compared with the true 19-class map. For each group it prints the dataset-level
Dice, and for each class of the group: on how many faces it appears, its pixels, its recall (the
share of its pixels given its own group) and its missed pixels as a share of the group's errors
(missed + false pixels); then the classes of other groups that the generator gives the group
(false pixels), each that makes over 2 % of the group's errors; last, the mean Dice over the groups (the benchmark's). A group's Dice counts
pixels over all faces, so a class on a few faces with many pixels (a hat) can carry a group.
``--on sharp`` gives the generator the sharp face instead of the blurry one: the most a better
restoration could get from reading the generator on it.
"""

import sys

import numpy as np
from tqdm import tqdm

from smfd import data, labels
from smfd.cli import add_face_set_options, face_set, run_reported, script_parser
from smfd.images import resize_labels
from smfd.restorer import Restorer


def class_by_group(records, restorer: Restorer, seed: int, on: str = "blurry") -> tuple[np.ndarray, np.ndarray]:
    """Pixels of each true class (rows, 19) given each group (columns, 5) by the generator reading
    the ``on`` face (blurry or sharp) over the faces, and on how many faces each class appears."""
    n = len(labels.CLASSES)
    counts = np.zeros((n, len(labels.GROUPS)), np.int64)
    faces = np.zeros(n, np.int64)
    for record in tqdm(records, desc="masks", unit="face"):
        blurry, sharp, groups, _ = data.benchmark_pair(record, seed)
        classes = resize_labels(data.load_classes(record), groups.shape[::-1]).astype(np.int64)
        predicted = restorer.mask(blurry if on == "blurry" else sharp)
        counts += np.bincount(classes.ravel() * counts.shape[1] + predicted.ravel(),
                              minlength=counts.size).reshape(counts.shape)
        faces += np.bincount(np.unique(classes), minlength=n)
    return counts, faces


def report(counts: np.ndarray, faces: np.ndarray, min_share: float = 0.02) -> None:
    member = labels.CLASS_TO_GROUP
    dices = []
    for g, group in enumerate(labels.GROUPS):
        mine = member == g
        # pixels: given the group and of it, given the group, of the group
        hit, given, truth = counts[mine, g].sum(), counts[:, g].sum(), counts[mine].sum()
        missed, false = truth - hit, given - hit
        errors = max(missed + false, 1)
        if given + truth:
            dices.append(2 * hit / (given + truth))
        dice = f"{dices[-1]:.4f}" if given + truth else "- (in neither map)"
        print(f"\n{group}: Dice {dice}; {missed:,} pixels missed, {false:,} false")
        print(f"  {'class':10s} {'faces':>5s} {'pixels':>9s} {'recall':>7s}  missed pixels (share of the errors)")
        for c in np.flatnonzero(mine):
            total = counts[c].sum()
            recall = f"{counts[c, g] / total:7.3f}" if total else f"{'-':>7s}"
            print(f"  {labels.CLASSES[c]:10s} {faces[c]:5d} {total:9,d} {recall}  {total - counts[c, g]:,} "
                  f"({(total - counts[c, g]) / errors:.2f})")
        others = [c for c in np.argsort(-counts[:, g]) if not mine[c] and counts[c, g] > min_share * errors]
        if others:
            print("  false pixels on: " + ", ".join(f"{labels.CLASSES[c]} {counts[c, g]:,} "
                                                   f"({counts[c, g] / errors:.2f})" for c in others))
    print(f"\nmean Dice over the groups: {np.mean(dices):.4f}")


def main() -> None:
    parser = script_parser(__doc__)
    add_face_set_options(parser)
    parser.add_argument("--on", choices=("blurry", "sharp"), default="blurry",
                        help="the face the generator reads: the degraded one, as users' (default), or the sharp one")
    args = parser.parse_args()
    records = face_set(args)
    restorer = Restorer.from_pretrained(args.weights, args.device, args.engine)
    counts, faces = class_by_group(records, restorer, args.seed, args.on)
    print(f"\n{len(records)} {args.split} faces from {args.data}, seed {args.seed}, the generator reading the "
          f"{args.on} faces; engine {restorer.engine.describe()}")
    report(counts, faces)


if __name__ == "__main__":
    sys.exit(run_reported(main))
