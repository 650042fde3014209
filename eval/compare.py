"""``smfd eval --pairs``: restore evaluation pairs with many methods and score every output.

Per method one row of ``results.csv`` (:data:`eval.report.COLUMNS`): the mean over images of PSNR,
SSIM, MSE (SPEC section 2), NIQE, LPIPS, identity (dlib descriptor distance, and the share of images
under dlib's same-person threshold) and landmark distance, and FID over the set; with the standard
errors of the PSNR, SSIM and identity means (SD / sqrt(n)).
A method or metric that cannot run here leaves its cells empty and says why in ``status``; no
number is ever made up. Restored images are kept in ``outputs/<method>/<id>.png``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from smfd import metrics
from smfd.batch import check_removable
from smfd.errors import InputError, MetricUnavailable
from smfd.identity import SAME_PERSON
from smfd.data import WORK_SIZE
from smfd.images import resize_to, write_png
from smfd.runtime import pick_device

from . import report
from .pairs import Pair
from .report import PER_IMAGE, RESULT_FILES



@dataclass
class EvalOptions:
    weights: dict[str, str] = field(default_factory=dict)  # method -> file (or SMFD weights folder)
    device: str = "cpu"
    fidelity: float = 0.5  # CodeFormer's w
    download: bool = False  # fetch absent official weights first
    restorer: object = None  # an already loaded smfd.Restorer for the SMFD methods


def _checked_niqe(module):
    module.pristine_model()  # raises MetricUnavailable before any image is scored
    return module.niqe


class Metrics:
    """Every metric this machine can compute; the others with the reason they cannot."""

    def __init__(self, device: str = "cpu"):
        from smfd import identity

        from . import niqe, perceptual

        device = pick_device(device)
        self.unavailable: dict[str, MetricUnavailable] = {}
        self.niqe = self._try("niqe", lambda: _checked_niqe(niqe))
        self.lpips = self._try("lpips", lambda: perceptual.LPIPS(device))
        self.fid = self._try("fid", lambda: perceptual.FID(device))
        self.geometry = self._try("id_dist", identity.geometry)
        if self.geometry is None:
            self.unavailable["same_person"] = self.unavailable["lmd"] = self.unavailable["id_dist"]

    def _try(self, name: str, make):
        try:
            return make()
        except MetricUnavailable as exc:
            self.unavailable[name] = exc
            return None

    def per_image(self, restored: np.ndarray, sharp: np.ndarray) -> tuple[dict, dict]:
        """(scores, problems): one value per available metric, or why it failed on this image."""
        scores = {"psnr": metrics.psnr(restored, sharp), "ssim": metrics.ssim(restored, sharp),
                  "mse": metrics.mse(restored, sharp)}
        problems = {}
        for name, fn in (("niqe", lambda: self.niqe(restored)),
                         ("lpips", lambda: self.lpips(restored, sharp)),
                         ("id_dist", lambda: self.geometry.compare(restored, sharp))):
            if name in self.unavailable:
                continue
            try:
                value = fn()
            except (ValueError, RuntimeError) as exc:
                problems[name] = str(exc)
                if name == "id_dist":
                    problems["lmd"] = str(exc)
                continue
            if name == "id_dist":
                scores["id_dist"], scores["lmd"] = value
            else:
                scores[name] = value
        return scores, problems


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _status(reasons: dict[str, str]) -> str:
    return "ok" if not reasons else "; ".join(f"{k}: {v}" for k, v in reasons.items())


def load_methods(names: list[str], options: EvalOptions, has_masks: bool) -> dict[str, object]:
    """name -> a loaded Method, or the reason (str) it cannot run here."""
    from baselines import info, load

    loaded, restorers = {}, {}
    for name in names:
        if info(name).needs_mask and not has_masks:
            loaded[name] = "not available: needs ground-truth masks (--masks)"
            continue
        smfd = name.startswith("smfd")
        weights = options.weights.get(name) or (options.weights.get("smfd") if smfd else None)
        # Both SMFD rows share one loaded model when they use the same weights.
        restorer = restorers.get(weights, options.restorer if weights is None else None) if smfd else None
        try:
            method = load(name, weights, options.device, restorer, fidelity=options.fidelity,
                          download_missing=options.download)
        except InputError as exc:
            reason = str(exc).removeprefix(name + ": ")
            if weights is not None:  # named on the command line: a mistake to correct, not a row to fill
                raise InputError(f"--weights {name}={weights}: {reason}") from None
            loaded[name] = f"not available: {reason}"
            continue
        if smfd:
            restorers[weights] = method.restorer
        loaded[name] = method
    return loaded


def earlier_results(out: Path, names: list[str]) -> list[Path]:
    """What an earlier evaluation left in ``out`` that this one would replace."""
    found = [out / f for f in RESULT_FILES if (out / f).exists()]
    return found + [out / "outputs" / n for n in names
                    if (out / "outputs" / n).is_dir() and any((out / "outputs" / n).iterdir())]


def evaluate(pairs: list[Pair], names: list[str], out: str | Path, options: EvalOptions | None = None,
             grid_rows: int = 4, overwrite: bool = False) -> list[dict]:
    """Restore and score; writes results.csv, per_image.csv, results.md, chart.html and grid.png
    into ``out`` and returns the rows. An earlier run's results there are refused unless
    ``overwrite`` (then its outputs of these methods are removed first)."""
    from baselines import methods

    options = options or EvalOptions()
    if not pairs:
        raise InputError("no evaluation pairs")
    unknown = [n for n in names if n not in {m.name for m in methods()}]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)} (see 'smfd baselines list')")
    if grid_rows < 1:
        raise InputError(f"--grid-rows must be at least 1, got {grid_rows}")
    pick_device(options.device)  # an unusable --device is named before anything is read or removed
    out = Path(out)
    taken = earlier_results(out, names)
    if taken and not overwrite:
        raise InputError(f"{taken[0]}: results of an earlier evaluation; pass --overwrite to replace them "
                         "or choose another --out")
    replaced = [out / "outputs" / n for n in names]
    if overwrite and (out / "outputs").is_dir():  # and the images of methods the new results.csv will not list
        replaced += sorted(d for d in (out / "outputs").iterdir() if d.is_dir() and d not in replaced)
    inputs = [p for pair in pairs for p in (pair.blurry, pair.sharp, pair.mask) if p is not None]
    check_removable(replaced, inputs, "an image of the pairs evaluated")  # e.g. --pairs OUT/outputs/blurry
    # grid.png, results.* among the pairs: the next evaluation would take them for pairs
    if out.resolve() in {p.parent.resolve() for p in inputs}:
        raise InputError(f"{out}: a folder of the pairs evaluated; the results would lie among them "
                         "(choose another --out)")
    for pair in pairs:  # an unreadable or mismatched pair is named before any method runs
        pair.load()
    loaded = load_methods(names, options, all(p.mask is not None for p in pairs))
    suite = Metrics(options.device)
    for folder in replaced:  # only now that the methods and metrics load
        if folder.is_dir():  # --overwrite: no stale image of a face outside this set stays behind
            shutil.rmtree(folder)
    if overwrite:  # nor results of the images just removed, should this evaluation not finish
        for name in (*RESULT_FILES, "plotly.min.js"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    rows, per_image = [], []
    runnable = [n for n in names if not isinstance(loaded[n], str)]
    bar = tqdm(total=len(runnable) * len(pairs), desc="eval", unit="image")
    for name in names:
        method = loaded[name]
        if isinstance(method, str):
            rows.append({"method": name, "n": 0, "status": method})
            continue
        bar.set_description(name)
        scores: dict[str, list[float]] = {k: [] for k in PER_IMAGE}
        failures: dict[str, list[str]] = {}  # metric (or "restore") -> "id: reason" per failed image
        restored_all, sharp_all = [], []
        for pair in pairs:
            blurry, sharp, mask = pair.load()
            bar.update()
            try:
                restored = method.restore(blurry, mask)
            except InputError as exc:
                failures.setdefault("restore", []).append(f"{pair.id}: {exc}")
                continue
            write_png(out / "outputs" / name / f"{pair.id}.png", restored)
            # scored at 256x256 (SPEC section 2), whatever the size of the pairs a user brings
            restored, sharp = (resize_to(x, (WORK_SIZE, WORK_SIZE)) for x in (restored, sharp))
            image_scores, image_problems = suite.per_image(restored, sharp)
            for k, v in image_scores.items():
                scores[k].append(v)
            for k, v in image_problems.items():
                failures.setdefault(k, []).append(f"{pair.id}: {v}")
            per_image.append({"method": name, "id": pair.id, **image_scores})
            restored_all.append(restored)
            sharp_all.append(sharp)
        n = len(restored_all)
        # A mean over only some of the images would not be comparable with the other rows: a
        # metric that failed on an image, or a method that failed to restore one, leaves it empty.
        every = n == len(pairs)
        row = {"method": name, "n": n,
               **{k: _mean(v) if every and len(v) == n else None for k, v in scores.items()}}
        if row["id_dist"] is not None:
            row["same_person"] = float(np.mean(np.array(scores["id_dist"]) < SAME_PERSON))
        for k in report.WITH_SE:
            if row[k] is not None and n >= 2 and np.isfinite(scores[k]).all():  # a perfect face's PSNR is inf
                row[f"{k}_se"] = float(np.std(scores[k], ddof=1) / np.sqrt(n))
        reasons = {k: f"failed on {len(v)} of {len(pairs) if k == 'restore' else n} images (first: {v[0]})"
                   + ("; no means, they would cover other faces than the other rows" if k == "restore" else "")
                   for k, v in failures.items()}
        if suite.fid is not None and every and n >= 2:
            try:
                row["fid"] = suite.fid(restored_all, sharp_all)
            except (ValueError, RuntimeError) as exc:  # e.g. a covariance pytorch-fid cannot take
                reasons["fid"] = f"failed ({exc})"
        elif suite.fid is not None and every:
            reasons["fid"] = "needs at least two restored images"
        reasons.update({k: f"not available ({v.reason})" for k, v in suite.unavailable.items()})
        rows.append({**row, "status": _status(reasons)})
    bar.close()
    report.write_all(out, rows, per_image, pairs, loaded, suite.unavailable, grid_rows)
    return rows

