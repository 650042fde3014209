"""``smfd eval`` on real pairs made from ../shared/data: pairs, results files, the thesis tables."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from eval import niqe, report, thesis
from eval.pairs import find_pairs
from smfd import data, identity, metrics
from smfd.identity import SAME_PERSON
from smfd.cli import main
from smfd.errors import InputError
from smfd.images import read_image, read_labels

FACES = 3


@pytest.fixture(scope="module")
def pairs_dir(celeba, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    assert main(["eval", "--make-pairs", str(celeba), "--out", str(out), "--limit", str(FACES)]) == 0
    return out


@pytest.fixture(scope="module")
def engines_cache(tmp_path_factory):
    """The OpenVINO conversions of these tests' networks, made once (each takes 20-70 s)."""
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(autouse=True)
def no_weights_cache(tmp_path, monkeypatch, engines_cache):
    """A cache with NIQE's parameters (fetched by 'make install') but no external weights, and
    no torch hub backbones: what this machine has, whatever the real caches hold."""
    from eval.niqe import niqe_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "niqe").symlink_to(niqe_dir())
    (cache / "engines").symlink_to(engines_cache)
    monkeypatch.setenv("SMFD_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_making_pairs_names_a_bad_face_before_anything_is_removed(shared_data, tmp_path, capsys):
    """eval --make-pairs checks every face file first: a bad one is one line naming it, and the
    complete pairs of an earlier run stay as they were, even with --overwrite."""
    faces = tmp_path / "faces"
    faces.mkdir()
    for image in sorted((shared_data / "ffhq_mini").glob("*.jpg"))[:2]:
        shutil.copy(image, faces)
    out = tmp_path / "pairs"
    assert main(["eval", "--make-pairs", str(faces), "--out", str(out), "--split", "all"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"into {out}/{{blurry,sharp}}")  # faces without masks
    made = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (faces / "zz_broken.jpg").write_text("not a photo")
    capsys.readouterr()
    assert main(["eval", "--make-pairs", str(faces), "--out", str(out), "--split", "all", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{faces / 'zz_broken.jpg'}: not an image file" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == made
    # Two files of one name would be one pair, the second replacing the first.
    (faces / "zz_broken.jpg").unlink()
    twin = shutil.copy(sorted(faces.glob("*.jpg"))[0], faces / f"{sorted(faces.glob('*.jpg'))[0].stem}.png")
    assert main(["eval", "--make-pairs", str(faces), "--out", str(out), "--split", "all", "--overwrite"]) == 2
    assert f"{twin}: same name as {twin.stem}.jpg" in capsys.readouterr().err
    twin.unlink()

    # A mask value out of range shows only when the face is made, halfway: the earlier pairs stay.
    dataset = tmp_path / "dataset"
    for sub in ("images", "masks"):
        (dataset / sub).mkdir(parents=True)
    for record in data.open_dataset(shared_data / "celebamask_mini")[:2]:
        shutil.copy(record.image, dataset / "images")
        shutil.copy(record.mask, dataset / "masks")
    pairs = tmp_path / "masked_pairs"
    assert main(["eval", "--make-pairs", str(dataset), "--out", str(pairs), "--split", "all"]) == 0
    made = {p: p.read_bytes() for p in pairs.rglob("*") if p.is_file()}
    last = sorted((dataset / "masks").iterdir())[-1]
    bad = np.array(Image.open(last))
    bad[0, 0] = 30
    Image.fromarray(bad).save(last)
    capsys.readouterr()
    assert main(["eval", "--make-pairs", str(dataset), "--out", str(pairs), "--split", "all", "--overwrite"]) == 2
    assert f"{last}: class index 30 outside 0..18" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in pairs.rglob("*") if p.is_file()} == made


def test_overwrite_never_removes_what_the_run_reads(celeba, pairs_dir, tmp_path, capsys):
    """--out the dataset folder (its masks/ would be replaced by the pairs' masks), or --pairs an
    earlier evaluation's outputs: refused in one line even with --overwrite, and nothing removed."""
    dataset = tmp_path / "dataset"
    (dataset / "images").mkdir(parents=True)
    (dataset / "masks").mkdir()
    for record in data.open_dataset(celeba)[:2]:
        shutil.copy(record.image, dataset / "images")
        shutil.copy(record.mask, dataset / "masks")
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert main(["eval", "--make-pairs", str(dataset), "--out", str(dataset), "--split", "all", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"smfd: error: {dataset / 'masks'}: holds {dataset / 'masks'}/") and \
        err.endswith(f"a file of the dataset {dataset}, which replacing this folder would delete (choose another --out)")
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()} == before

    out = tmp_path / "eval"
    shutil.copytree(pairs_dir / "blurry", out / "outputs" / "blurry")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["eval", "--pairs", str(out / "outputs" / "blurry"), str(pairs_dir / "sharp"), "--methods", "blurry",
                 "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"smfd: error: {out / 'outputs' / 'blurry'}: holds ") and "an image of the pairs" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    for folder in ("blurry", "sharp"):  # results among the pairs: the next evaluation would take grid.png for one
        assert main(["eval", "--pairs", str(out / "outputs" / "blurry"), str(pairs_dir / "sharp"), "--methods",
                     "blurry", "--out", str(out / "outputs" / "blurry" if folder == "blurry" else pairs_dir / "sharp"),
                     "--overwrite"]) == 2
        assert "a folder of the pairs evaluated; the results would lie among them" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (pairs_dir / "sharp").iterdir()) == sorted(p.name for p in out.rglob("*.png"))


def test_pairs_follow_the_benchmark_protocol(celeba, pairs_dir):
    test_ids = {r.id for r in data.select(data.open_dataset(celeba), "test")}
    records = {r.id: r for r in data.open_dataset(celeba)}
    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp", pairs_dir / "masks")
    assert len(pairs) == FACES
    for pair in pairs:
        assert pair.id in test_ids  # held-out faces only
        blurry, sharp, groups, recipe = data.benchmark_pair(records[pair.id], seed=0)
        assert np.array_equal(read_image(pair.blurry), blurry) and np.array_equal(read_image(pair.sharp), sharp)
        assert np.array_equal(read_labels(pair.mask), groups) and blurry.shape == (256, 256, 3)
        written = json.loads(pair.blurry.with_suffix(".json").read_text())
        assert written["layers"] == recipe.to_dict()["layers"]
        # the stream it was drawn from, which `smfd blur --seed 0` is not, and the size it was brought to
        assert written["stream"] == f"smfd.data.eval_rng(0, {pair.id!r})" and written["resized_to"] == 256
    assert main(["eval", "--make-pairs", str(celeba), "--out", str(pairs_dir), "--limit", "1"]) == 2  # no overwrite


def test_made_pairs_are_kept_and_an_interrupted_making_is_named(celeba, tmp_path, capsys):
    out = tmp_path / "pairs"
    make = ["eval", "--make-pairs", str(celeba), "--out", str(out), "--limit", "2"]
    assert main(make) == 0
    made = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(make) == 2
    assert f"{out / 'pairs.json'}: pairs made earlier; pass --overwrite" in capsys.readouterr().err
    (out / "pairs.json").unlink()  # as an interruption before the end leaves it
    assert main(make) == 2
    assert "not empty and no pairs.json beside it (an interrupted run?)" in capsys.readouterr().err
    (out / "sharp" / "stale.png").write_bytes(b"")
    assert main(make + ["--overwrite"]) == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == made  # the same pairs, nothing stale


def test_kept_pairs_know_their_dataset_from_any_folder(celeba, tmp_path, monkeypatch):
    """pairs.json names the dataset's folder itself, not as typed relative to where --make-pairs ran."""
    monkeypatch.chdir(celeba.parent)
    assert main(["eval", "--make-pairs", celeba.name, "--out", str(tmp_path / "pairs"), "--limit", "1"]) == 0
    monkeypatch.chdir(tmp_path)
    thesis.check_pairs_fit(tmp_path / "pairs", str(celeba), 1)  # the same dataset, named from elsewhere
    (tmp_path / celeba.name).mkdir()  # here that name is another folder
    with pytest.raises(InputError, match=f"made from {celeba.resolve()}, not {celeba.name};"):
        thesis.check_pairs_fit(tmp_path / "pairs", celeba.name, 1)


def test_thesis_tables_check_their_data_and_kept_pairs_up_front(celeba, tmp_path, monkeypatch, capsys):
    """A dataset without masks, or pairs kept from another dataset or too few of them, are named
    before any training."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for image in sorted((celeba / "images").iterdir())[:40]:
        (plain / image.name).symlink_to(image)
    args = ["eval", "--thesis-tables", "--tables", "4.1", "--workers", "0", "--out"]
    assert main(args + [str(tmp_path / "a"), "--data", str(plain)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("held-out faces have no mask; the thesis' tables need a dataset with a mask for every face")
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "b"
    assert main(["eval", "--make-pairs", str(celeba), "--out", str(kept / "pairs"), "--limit", "2"]) == 0
    capsys.readouterr()
    assert main(args + [str(kept), "--data", str(plain)]) == 2
    assert "no mask" in capsys.readouterr().err  # the data is checked first
    assert main(args + [str(kept), "--data", str(celeba), "--test-faces", "3"]) == 2
    assert "holds 2 held-out faces, fewer than the 3 asked for" in capsys.readouterr().err
    other = tmp_path / "other"  # another dataset folder (of links to the same files)
    for sub in ("images", "masks"):
        (other / sub).mkdir(parents=True)
        for f in (celeba / sub).iterdir():
            (other / sub / f.name).symlink_to(f)
    assert main(args + [str(kept), "--data", str(other), "--test-faces", "2"]) == 2
    assert f"made from {celeba}, not {other}" in capsys.readouterr().err
    record = kept / "pairs" / "pairs.json"
    made = record.read_text()
    for damaged in ("", "[]", '{"split": "test"}'):  # e.g. a copy cut short
        record.write_text(damaged)
        assert main(args + [str(kept), "--data", str(celeba), "--test-faces", "2"]) == 2
        assert f"{record}: not a record of evaluation pairs made by smfd" in capsys.readouterr().err
    record.write_text(made)
    with monkeypatch.context() as patch:  # tables 4.3 and 4.4 measure identity: no dlib, said before training
        patch.setitem(sys.modules, "dlib", None)
        assert main(["eval", "--thesis-tables", "--tables", "4.4", "--workers", "0", "--out", str(kept),
                     "--data", str(celeba), "--test-faces", "2"]) == 2
    assert capsys.readouterr().err.strip().endswith("tables 4.3 and 4.4 measure identity, which is not available "
                                                   "here: dlib is not installed; pip install dlib-bin (see requirements.txt)")
    assert not (kept / "runs").exists()
    # An unusable device, or table 4.2's weights that do not load, are named before the pairs are made.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    for extra, says in ((["--device", "cuda"], "no CUDA GPU"), (["--weights", f"codeformer={junk}"],
                                                               f"--weights codeformer={junk}: {junk}: cannot read")):
        assert main(args[:2] + ["--tables", "4.1", "4.2"] + args[4:] + [str(tmp_path / "c"), "--data", str(celeba),
                                                                     *extra]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "c").exists()


def test_eval_writes_every_result(pairs_dir, random_weights, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--masks",
                 str(pairs_dir / "masks"), "--methods", "blurry,smfd-gt-mask", "gfpgan-1.4", "--weights",
                 f"smfd={random_weights}", "--out", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "smfd baselines download gfpgan-1.4" in printed
    with (out / "results.csv").open() as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
        assert list(rows["blurry"]) == ["method", "n", "psnr", "ssim", "mse", "niqe", "lpips", "fid", "id_dist",
                                        "same_person", "lmd", "psnr_se", "ssim_se", "id_dist_se", "status"]
    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp")
    blurry = rows["blurry"]
    faces = [(read_image(p.blurry), read_image(p.sharp)) for p in pairs]
    assert all(b.shape == (256, 256, 3) for b, _ in faces)  # the scoring size: no resizing to redo here
    geometry = identity.geometry()
    ids, lmds = zip(*(geometry.compare(b, s) for b, s in faces))
    expected = {"psnr": [metrics.psnr(b, s) for b, s in faces], "ssim": [metrics.ssim(b, s) for b, s in faces],
                "niqe": [niqe.niqe(b) for b, _ in faces], "id_dist": ids, "lmd": lmds,
                "same_person": [d < SAME_PERSON for d in ids]}
    assert blurry["n"] == str(FACES)
    for column, values in expected.items():  # each column is the mean of its measure over the faces
        assert float(blurry[column]) == pytest.approx(np.mean(values), abs=1e-3), column
    # LPIPS and FID have no backbone weights here: empty cells and the reason, never a number.
    assert blurry["lpips"] == "" and blurry["fid"] == "" and "lpips: not available" in blurry["status"]
    gfpgan = rows["gfpgan-1.4"]
    assert gfpgan["n"] == "0" and gfpgan["psnr"] == "" and "not available: weights not found" in gfpgan["status"]
    assert rows["smfd-gt-mask"]["n"] == str(FACES) and rows["smfd-gt-mask"]["psnr"] != ""
    restored = np.mean([metrics.psnr(read_image(out / "outputs" / "smfd-gt-mask" / f"{p.id}.png"),
                                     read_image(p.sharp)) for p in pairs])
    assert float(rows["smfd-gt-mask"]["psnr"]) == pytest.approx(restored, abs=0.01)  # of the saved outputs
    with (out / "per_image.csv").open() as f:
        per_image = list(csv.DictReader(f))
    assert sorted((r["method"], r["id"]) for r in per_image) == sorted(
        (m, p.id) for m in ("blurry", "smfd-gt-mask") for p in pairs)  # a row per face of each scored method
    for method in ("blurry", "smfd-gt-mask"):  # the standard error of the mean over the faces
        values = [float(r["psnr"]) for r in per_image if r["method"] == method]
        assert float(rows[method]["psnr_se"]) == pytest.approx(np.std(values, ddof=1) / np.sqrt(FACES), abs=0.01)
    assert rows["gfpgan-1.4"]["psnr_se"] == ""
    for method in ("blurry", "smfd-gt-mask"):
        mean = np.mean([float(r["psnr"]) for r in per_image if r["method"] == method])
        assert mean == pytest.approx(float(rows[method]["psnr"]), abs=0.01)
    chart = (out / "chart.html").read_text()
    assert all(method in chart for method in ("blurry", "smfd-gt-mask")) and (out / "plotly.min.js").is_file()
    assert "zero-shot" in (out / "results.md").read_text() and "S-Lab" not in (out / "results.md").read_text()
    # what made SMFD's figures: its weights and the engine that ran them
    assert re.search(rf"\(`smfd-gt-mask`\).*Weights: {re.escape(str(random_weights))} \((openvino|pytorch)",
                     (out / "results.md").read_text())
    assert read_image(out / "grid.png").shape == (FACES * 256, 4 * 256, 3)  # input, 2 methods, target
    assert len(list((out / "outputs" / "smfd-gt-mask").glob("*.png"))) == FACES


def test_eval_never_replaces_earlier_results_silently(pairs_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "eval"
    args = ["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--methods", "blurry",
            "--out", str(out), "--grid-rows", "1"]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"smfd: error: {out / 'results.csv'}: results of an earlier evaluation; pass --overwrite "
                   "to replace them or choose another --out")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    for name in ("results.csv", "per_image.csv", "grid.png", "chart.html", "results.md"):
        others = [p for p in out.iterdir() if p.name != name and p.is_file()]
        for p in others:
            p.rename(tmp_path / p.name)  # only `name` is left of the earlier results
        assert main(args) == 2 and f"{out / name}: results of an earlier" in capsys.readouterr().err
        for p in others:
            (tmp_path / p.name).rename(p)
    (out / "outputs" / "blurry" / "stale.png").write_bytes(b"")
    (out / "outputs" / "deconv").mkdir()  # a method of the earlier results that this run does not name
    (out / "outputs" / "deconv" / "face.png").write_bytes(b"")
    with monkeypatch.context() as m:  # a run that cannot start removes nothing, --overwrite or not
        m.setattr(torch.cuda, "is_available", lambda: False)
        assert main(args + ["--overwrite", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err and (out / "outputs" / "blurry" / "stale.png").exists()
    with monkeypatch.context() as m:  # one that stops before its results: none left of the images it removed
        m.setattr(report, "write_all", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main(args + ["--overwrite"]) == 130
        assert not any((out / name).exists() for name in (*report.RESULT_FILES, "plotly.min.js"))
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "outputs" / "blurry" / "stale.png").exists()
    assert sorted(p.name for p in (out / "outputs").iterdir()) == ["blurry"]  # no images results.csv does not list
    assert len(list((out / "outputs" / "blurry").glob("*.png"))) == FACES


def test_a_method_that_fails_on_a_face_gets_no_means(pairs_dir, tmp_path, monkeypatch):
    """Means over the faces it restored would not be comparable with the other rows: the row keeps
    its count and per-image scores, its means are empty and the status says why."""
    from baselines import info as method_info
    from eval import compare
    from smfd.errors import InputError

    class FailsOnce:
        info, weights, calls = method_info("blurry"), "", []

        def restore(self, image, mask=None):
            self.calls.append(1)
            if len(self.calls) == 1:
                raise InputError("cannot restore this one")
            return image

    monkeypatch.setattr(compare, "load_methods", lambda names, options, has_masks: {"blurry": FailsOnce()})
    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp")
    row, = compare.evaluate(pairs, ["blurry"], tmp_path / "out")
    assert row["n"] == len(pairs) - 1 and row["psnr"] is None and row["ssim"] is None
    assert f"restore: failed on 1 of {len(pairs)} images" in row["status"] and "no means" in row["status"]
    with (tmp_path / "out" / "per_image.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(pairs) - 1


def test_eval_refuses_bad_inputs(pairs_dir, tmp_path, capsys):
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--methods", "magic",
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown method(s) magic" in capsys.readouterr().err
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--weights", "x=y",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--weights expects NAME=PATH" in capsys.readouterr().err
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--weights",
                 f"gfpgan-1.4={tmp_path / 'typo.pth'}", "--out", str(tmp_path / "o")]) == 2
    assert f"--weights gfpgan-1.4={tmp_path / 'typo.pth'}: {tmp_path / 'typo.pth'} not found" in capsys.readouterr().err
    pairs = ["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--out", str(tmp_path / "o")]
    for extra, says in ((["--limit", "1"], "--limit does not go with --pairs"),  # it would be ignored
                        (["--tables", "4.1"], "--tables does not go with --pairs"),
                        (["--methods", "blurry", "blurry"], "--methods names blurry more than once"),
                        (["--methods", ","], "--methods names no method (see 'smfd baselines list')"),
                        (["--methods", "all,smfd"], "--methods all already holds every method: give it alone")):
        assert main(pairs + extra) == 2
        assert capsys.readouterr().err.strip() == f"smfd: error: {says}"
    assert main(["eval", "--make-pairs", str(pairs_dir), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "smfd: error: --device does not go with --make-pairs"
    assert main(["eval", "--thesis-tables", "--data", str(pairs_dir), "--out", str(tmp_path / "o"), "--seed", "3"]) == 2
    assert capsys.readouterr().err.strip() == "smfd: error: --seed does not go with --thesis-tables"
    # an option no requested table reads would be ignored (and the header would report a budget)
    tables = ["eval", "--thesis-tables", "--data", str(pairs_dir), "--out", str(tmp_path / "o"), "--tables"]
    for extra, says in ((["4.2", "--budget", "2048"], "--budget: only table 4.1 or 4.3 or 4.4 reads it, and "
                                                      "--tables 4.2 builds none of them"),
                        (["4.1", "--set", "soft_mask=true"], "--set: only table 4.3 or 4.4 reads it, and --tables "
                                                             "4.1 builds none of them"),
                        (["4.3", "4.4", "--codeformer-fidelity", "0.7"], "--codeformer-fidelity: only table 4.2 "
                                                                         "reads it, and --tables 4.3 4.4 builds none "
                                                                         "of them"),
                        (["4.1", "--weights", "codeformer=x.pth"], "--weights codeformer=...: only table 4.2 runs "
                                                                   "codeformer, and --tables 4.1 does not build it")):
        assert main(tables + extra) == 2
        assert capsys.readouterr().err.strip() == f"smfd: error: {says}"
    assert not (tmp_path / "o").exists()
    twice = tmp_path / "twice"
    shutil.copytree(pairs_dir / "blurry", twice)
    first = sorted(twice.glob("*.png"))[0]
    Image.open(first).save(first.with_suffix(".jpg"))  # one face, two files
    assert main(["eval", "--pairs", str(twice), str(pairs_dir / "sharp"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (f"smfd: error: {first}: same name as {first.stem}.jpg; which is "
                                               f"the face {first.stem}?")
    junk = tmp_path / "junk.pth"  # named weights that do not load: refused, not an empty row with exit 0
    junk.write_bytes(b"not a checkpoint")
    for item in (f"gfpgan-1.4={junk}", f"smfd={junk}"):
        assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--methods",
                     "blurry,gfpgan-1.4,smfd", "--weights", item, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"smfd: error: --weights {item}: "), err
    for weights, says in (([f"gfpgan-1.4={junk}"], f"--weights gfpgan-1.4={junk}: gfpgan-1.4 is not among the "
                                                  "methods evaluated (blurry)"),  # would silently not run
                          ([f"deconv={junk}"], "--weights expects NAME=PATH with NAME among codeformer"),
                          ([f"codeformer={junk}", f"codeformer={junk}"], "--weights codeformer: given twice")):
        assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--methods", "blurry",
                     *(a for w in weights for a in ("--weights", w)), "--out", str(tmp_path / "o")]) == 2
        assert capsys.readouterr().err.strip().startswith(f"smfd: error: {says}")
    assert main(["eval", "--thesis-tables", "--data", str(pairs_dir), "--weights", f"smfd={tmp_path}",
                 "--out", str(tmp_path / "o")]) == 2
    said = capsys.readouterr().err
    assert f"--weights smfd={tmp_path}: model weights not found: {tmp_path / 'mask_generator.safetensors'}" in said
    assert main(["eval", "--thesis-tables", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    sharp = tmp_path / "sharp"
    shutil.copytree(pairs_dir / "sharp", sharp)
    broken = sorted(sharp.glob("*.png"))[-1]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(sharp), "--methods", "blurry",
                 "--out", str(tmp_path / "o")]) == 2
    assert f"{broken}: corrupt or truncated" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # named before any method ran
    for sub in ("tiny_blurry", "tiny_sharp"):  # no face: not rows of n = 0 and exit 0
        (tmp_path / sub).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / sub / "face.png")
    assert main(["eval", "--pairs", str(tmp_path / "tiny_blurry"), str(tmp_path / "tiny_sharp"), "--methods",
                 "deconv", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"smfd: error: {tmp_path / 'tiny_blurry' / 'face.png'}: image is too small (4x4; at least 8 px on each side)"
    assert not (tmp_path / "o").exists()


def test_pairs_of_another_size_are_scored_at_256(pairs_dir, tmp_path, capsys):
    """SPEC section 2 scores at 256x256: pairs brought at 512 give the figures of their 256 px
    copies, not their own (SSIM 0.07 higher there on a reviewer's 3 faces)."""
    import cv2

    from smfd.images import write_png

    for kind in ("blurry", "sharp"):
        for path in sorted((pairs_dir / kind).glob("*.png")):
            write_png(tmp_path / "big" / kind / path.name,
                      cv2.resize(read_image(path), (512, 512), interpolation=cv2.INTER_NEAREST))  # area: back
    scores = {}
    for name, root in (("big", tmp_path / "big"), ("native", pairs_dir)):
        assert main(["eval", "--pairs", str(root / "blurry"), str(root / "sharp"), "--methods", "blurry",
                     "--out", str(tmp_path / name), "--grid-rows", "1"]) == 0
        with open(tmp_path / name / "results.csv", newline="") as f:
            scores[name] = next(csv.DictReader(f))
    assert all(scores["big"][k] == scores["native"][k] for k in ("psnr", "ssim", "id_dist")), scores
    assert "every output scored at 256x256" in (tmp_path / "big" / "results.md").read_text()


def test_a_perfect_face_leaves_the_psnr_standard_error_empty(pairs_dir, tmp_path):
    """Its PSNR is infinite: the mean says so, a standard error would be nan."""
    sharp = str(pairs_dir / "sharp")
    assert main(["eval", "--pairs", sharp, sharp, "--methods", "blurry", "--out", str(tmp_path / "o"),
                 "--grid-rows", "1"]) == 0
    with open(tmp_path / "o" / "results.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["psnr"] == "inf" and row["psnr_se"] == "" and float(row["ssim_se"]) == 0


def test_the_blurry_input_is_always_evaluated_beside_the_methods():
    from smfd.cli import _method_list

    assert _method_list(["deconv"]) == (["deconv", "blurry"], True)
    assert _method_list(["blurry,deconv"]) == (["blurry", "deconv"], True)


def test_eval_without_masks(pairs_dir, tmp_path, capsys):
    """A method that needs ground-truth masks, chosen by name without --masks, is refused before
    any method runs; under 'all' it is a row that says why it did not run."""
    from eval.compare import EvalOptions, load_methods

    out = tmp_path / "eval"
    assert main(["eval", "--pairs", str(pairs_dir / "blurry"), str(pairs_dir / "sharp"), "--methods",
                 "deconv,smfd-gt-mask", "--out", str(out), "--grid-rows", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "smfd: error: smfd-gt-mask: needs ground-truth masks; give --masks DIR" and not out.exists()
    loaded = load_methods(["smfd-gt-mask"], EvalOptions(), has_masks=False)
    assert loaded == {"smfd-gt-mask": "not available: needs ground-truth masks (--masks)"}


def test_thesis_tables_with_a_tiny_budget(celeba, random_weights, tmp_path, monkeypatch, capsys):
    """Every table end to end on a budget of seconds (2 folds, 2 of the 5 ablation rows, UNet++ left
    out: it is UNet's code path). Such networks end below their table's floor: each trained row must
    be flagged and its numbers withheld, never printed as a result. A second sitting reuses the
    runs and the scores, and the tables are not replaced without --overwrite."""
    monkeypatch.setattr(thesis, "ABLATIONS", {k: thesis.ABLATIONS[k] for k in ("no-mask", "full")})
    monkeypatch.setattr(thesis, "MASK_MODELS", {k: thesis.MASK_MODELS[k] for k in ("mask-generator", "unet")})
    monkeypatch.setattr(thesis, "PRIOR_FACES", 40)
    args = ["eval", "--thesis-tables", "--data", str(celeba), "--out", str(tmp_path), "--budget", "4",
            "--samples-per-epoch", "4", "--patch", "32", "--batch", "4", "--val-faces", "1", "--folds", "2",
            "--test-faces", "1", "--workers", "0", "--weights", f"smfd={random_weights}", "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "thesis_tables.md").read_text() in text
    for heading in ("Table 4.1", "Table 4.2", "Table 4.3", "Table 4.4"):
        assert heading in text
    assert "**Training budget**: every trained row sees 4 training samples: 32x32 crops" in text
    lines = text.splitlines()

    def row(title: str) -> list[str]:
        found = [line for line in lines if line.startswith(f"| {title} |")]
        assert len(found) == 1, title
        return [c.strip() for c in found[0].strip("|").split("|")]

    # The floors are measured: the per-pixel prior, the blurry input (PSNR, SSIM, identity).
    prior, blurry = row("per-pixel prior (floor, no training on images)"), row("blurry input (floor)")
    assert 0 < float(prior[8]) < 100 and 15 < float(blurry[3]) < 40 and 0 <= float(blurry[6]) <= 100
    assert 0 < float(prior[14]) <= float(prior[8])  # mean Jaccard, after the 5 groups' Jaccard: never above Dice
    held_out = row("blurry input (floor, held-out faces)")  # table 4.4's floor: the same faces' figures
    assert abs(float(held_out[3]) - float(blurry[3])) < 0.006 and held_out[4:7] == blurry[4:7], held_out
    zero_shot = row("blurry")  # table 4.2: identity beside PSNR and SSIM, the blurry input's too
    assert abs(float(zero_shot[8]) - float(blurry[5])) < 0.0006 and zero_shot[9] == blurry[6], zero_shot
    # Every trained row is below its floor: flagged, its measured cells withheld.
    for title in ("mask generator (trained here)", "UNet (smp, resnet34 encoder, from scratch)",
                  thesis.ABLATION_TITLES["no-mask"], thesis.ABLATION_TITLES["full"], "fold 1", "fold 2"):
        cells = row(title)
        assert cells[1] == "4" and float(cells[2]) >= 0  # samples seen, minutes
        assert cells[3] == thesis.FLAG and not any(c.replace(".", "").isdigit() for c in cells[4:7]), cells
    assert sum(line.startswith("- ") and "no better than" in line for line in lines) == 6
    assert "not judged" in text and "not computed" in text
    assert "| UNet (smp" in text and "24,449,685" in text and "31,401,605" in text  # parameters, ours and thesis'
    assert "mask generator, not trained here" in text and "24.4687 ± 0.2289" in text
    for table in ("4.1", "4.3", "4.4"):
        assert read_image(tmp_path / f"curves_{table}.png").shape[2] == 3
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["deblur-full-fold0", "deblur-full-fold1", "deblur-no-mask-fold0", "mask-generator", "unet"]
    # Equal samples; the mask rows on whole faces (a face parser needs the whole face), SMFD-UNet on crops.
    patches = {run: json.loads((tmp_path / "runs" / run / "settings.json").read_text())["patch"] for run in runs}
    assert patches == {"deblur-full-fold0": 32, "deblur-full-fold1": 32, "deblur-no-mask-fold0": 32,
                       "mask-generator": None, "unet": None}

    # A second sitting: refused without --overwrite (nothing replaced), then runs and scores reused.
    tables = (tmp_path / "thesis_tables.md").read_bytes()
    assert main(args) == 2
    assert f"{tmp_path / 'thesis_tables.md'}: tables of an earlier run" in capsys.readouterr().err
    assert (tmp_path / "thesis_tables.md").read_bytes() == tables
    kept = {p: p.stat().st_mtime_ns for p in [*(tmp_path / "runs").glob("*/best.safetensors"),
                                             *(tmp_path / "scores").glob("*.json")]}
    (tmp_path / "thesis_tables.md").unlink()  # a sitting interrupted after its curves: it continues
    assert main(args + ["--tables", "4.3"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    capsys.readouterr()
    assert main(args + ["--overwrite", "--tables", "4.1", "4.3", "4.4"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert capsys.readouterr().out.count(thesis.FLAG) == text.count(thesis.FLAG)

    # The same runs against a floor 100 dB lower: the scored path of tables 4.3 and 4.4 (their cells,
    # the verdicts, the folds' mean ± SD), which real budgets take.
    measured = thesis.Lab.blurry
    monkeypatch.setattr(thesis.Lab, "blurry", lambda lab: {**measured(lab), "psnr": [p - 100 for p in measured(lab)["psnr"]]})
    assert main(args + ["--overwrite", "--tables", "4.3", "4.4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert thesis.FLAG not in "\n".join(lines)
    assert not any(line.startswith("- ") and "no better than" in line for line in lines)
    full, folds = row(thesis.ABLATION_TITLES["full"]), [row("fold 1"), row("fold 2")]
    # (a network of 4 samples: its own output, with the post-processing block's contrast and
    # brightness, may score far below the input: no colour match hides it)
    assert 5 < float(full[3]) < 40 and 0 <= float(full[5]) and 0 <= float(full[6]) <= 100  # GT masks
    assert 5 < float(full[7]) < 40 and 0 <= float(full[9]) and 0 <= float(full[10]) <= 100  # generated masks
    assert sum(line.startswith("- Ground-truth masks: ") for line in lines) == 1  # one step, one verdict
    assert "**Identity against the blurry input**" in "\n".join(lines)
    held = [float(f[3]) for f in folds]
    spread = row("mean ± SD")
    mean, sd = (float(v) for v in spread[3].split(" ± "))
    assert abs(mean - np.mean(held)) < 1e-4 and abs(sd - np.std(held)) < 1e-4 and spread[-2] == "24.4687 ± 0.2289"
    assert all("±" in cell for cell in spread[3:9])  # PSNR, SSIM, ID distance and share held out; PSNR, SSIM val
    share = [float(f[6]) for f in folds]  # the same-person share of each fold, and their mean ± SD
    assert all(0 <= x <= 100 for x in share) and abs(float(spread[6].split(" ± ")[0]) - np.mean(share)) < 0.06
    assert any(line.startswith("**Verdict.** across 2 folds the validation PSNR (what the thesis reports) varies by") for line in lines)

    # Another --set in the same runs folder: refused before any table is built (it was refused when
    # table 4.4's first run was reached, after hours of training for the tables before it).
    monkeypatch.setattr(thesis, "train_run", lambda *a: pytest.fail("a table was built first"))
    assert main(args + ["--overwrite", "--tables", "4.1", "4.4", "--set", "soft_mask=true"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'runs' / 'deblur-full-fold0' / 'state.pt'}: this run folder was trained with other settings" in err


def test_table_42_is_evaluated_again_where_a_metric_was_not_available(celeba, random_weights, tmp_path, monkeypatch,
                                                                      capsys):
    """A sitting cut short after table 4.2 keeps its scores; the next one reuses them, except where a
    metric could not be computed then (its parameters fetched since would stay "not available")."""
    calls = []

    def evaluate(pairs, methods, folder, options, overwrite):
        calls.append(status)
        return [{"method": m, "n": len(pairs), "status": status} for m in methods]

    monkeypatch.setattr(thesis, "evaluate", evaluate)
    args = ["eval", "--thesis-tables", "--tables", "4.2", "--data", str(celeba), "--out", str(tmp_path),
            "--test-faces", "1", "--weights", f"smfd={random_weights}", "--device", "cpu"]
    for status in ("niqe: not available (no parameters)", "ok"):
        (tmp_path / "thesis_tables.md").unlink(missing_ok=True)  # the sitting was cut short
        assert main(args) == 0
    assert calls == ["niqe: not available (no parameters)", "ok"]  # not the first sitting's, reused
    out = capsys.readouterr().out
    assert "| smfd | 1 |" in out and "Training budget" not in out  # nothing trained: no budget reported


def test_the_sample_budget_trains_residual_rows_and_the_thesis_budget_the_thesis_network():
    """At 8,192 samples a network that rebuilds the image may end below the blurry input, so the
    sample budget's SMFD-UNet rows are residual; --budget thesis keeps the thesis' network; --set wins."""
    assert thesis.Budget().deblur_config == {"residual": True}
    assert thesis.Budget.thesis().deblur_config == {}
    assert thesis.Budget().with_config({"residual": False}).deblur_config == {"residual": False}
    assert thesis.Budget.thesis().with_config({"soft_mask": True}).deblur_config == {"soft_mask": True}
    assert "SMFD-UNet config overrides {'residual': True}" in thesis.Budget().describe()
    # the mask generator: the shipped half-resolution design at the sample budget, said so; the
    # thesis' full resolution at its budget
    assert thesis.Budget().mask_config == {} and "at half resolution" in thesis.Budget().describe()
    assert thesis.Budget.thesis().mask_config == {"input_scale": 1.0}
    assert "mask generator config overrides {'input_scale': 1.0}" in thesis.Budget.thesis().describe()


@pytest.mark.parametrize("extra, config", [
    ([], {"residual": True}),
    (["--set", "soft_mask=true"], {"residual": True, "soft_mask": True}),
    (["--set", "residual=false"], {"residual": False}),
    (["--budget", "thesis"], {}),
    (["--budget", "thesis", "--set", "residual=true"], {"residual": True}),
])
def test_the_command_hands_its_budget_the_config_it_states(extra, config, tmp_path, monkeypatch):
    """What `smfd eval --thesis-tables` passes on: the sample budget's residual rows, the thesis
    budget's thesis network, --set over either."""
    seen = []
    monkeypatch.setattr(thesis, "reproduce", lambda data, out, tables, budget, *rest: seen.append(budget) or "")
    assert main(["eval", "--thesis-tables", "--data", str(tmp_path), "--out", str(tmp_path / "out"), *extra]) == 0
    assert seen[0].deblur_config == config


def test_the_paired_interval_uses_students_t():
    """Five faces differing by 1..5 dB: mean 3, sd sqrt(2.5); t(0.975, 4) = 2.7764 (tables)."""
    mean, half = thesis.paired_difference([1.0, 2, 3, 4, 5], [0.0] * 5)
    assert mean == pytest.approx(3.0) and half == pytest.approx(2.7764 * 2.5 ** 0.5 / 5 ** 0.5, rel=1e-4)
    assert thesis.paired_difference([1.0], [0.0])[1] == float("inf")


def test_verdicts_follow_the_measurements():
    dice = {"mask-generator": 63.4, "unet": 61.0, "unetplusplus": 66.6}
    line = thesis._verdict_41({k: {"mean_dice": v} for k, v in dice.items()})
    assert line.startswith("Mean Dice at equal budget, one run each: UNet++ 66.60 % > mask generator 63.40 % > "
                           "UNet 61.00 %; the thesis: UNet++ 68.20 % > UNet 67.21 % > mask generator 64.84 %.")
    assert "UNet++ leads, as in the thesis; **the order of the others differs" in line
    assert thesis._verdict_41({"mask-generator": {"mean_dice": 70.0}, "unet": {"mean_dice": 60.0},
                               "unetplusplus": {"mean_dice": 65.0}}).endswith(
        "**Differs from the thesis**: mask generator leads here, UNet++ there.")
    assert "same order" in thesis._verdict_41({k: {"mean_dice": v[0]} for k, v in thesis.THESIS_41.items()})
    rng = np.random.default_rng(0)
    before = {"psnr": list(rng.normal(23, 1, 60)), "ssim": list(rng.uniform(0.5, 0.7, 60))}
    gain = {"psnr": [v + 0.5 + rng.normal(0, 0.1) for v in before["psnr"]], "ssim": before["ssim"]}
    line = thesis.step_verdict("the mask branch", gain, before, 1.45)
    assert line.startswith("the mask branch adds 0.5") and "Differs" not in line
    assert "the same direction as the thesis, but it reports +1.45 dB, more than measured here" in line
    assert "the thesis reports +0.50 dB." in thesis.step_verdict("the mask branch", gain, before, 0.5)
    loss = {"psnr": [v - 0.3 + rng.normal(0, 0.05) for v in before["psnr"]], "ssim": before["ssim"]}
    line = thesis.step_verdict("the post-processing block", loss, before, 0.23)
    assert line.startswith("the post-processing block costs 0.3") and "**Differs from the thesis**" in line
    same = {"psnr": [v + rng.normal(0, 0.5) for v in before["psnr"]], "ssim": before["ssim"]}
    line = thesis.step_verdict("PixelShuffle", same, before, 0.25)
    assert "makes no measurable difference" in line and "Differs" in line
    assert "Differs" not in thesis.step_verdict("x", same, before, -0.02)
    before = {"id_distance": list(rng.uniform(0.4, 0.7, 60))}
    closer = {"id_distance": [v - 0.05 + rng.normal(0, 0.02) for v in before["id_distance"]]}
    line = thesis.identity_verdict(closer, before)
    assert line.startswith("closer to the person (descriptor distance -0.05")
    shares = [thesis._share(d["id_distance"]) for d in (before, closer)]
    assert f"same person {shares[0]:.1f} % -> {shares[1]:.1f} %" in line
    further = {"id_distance": [v + 0.04 for v in before["id_distance"]]}
    assert thesis.identity_verdict(further, before).startswith("further from the person")
    noise = {"id_distance": [v + rng.normal(0, 0.1) for v in before["id_distance"]]}
    assert thesis.identity_verdict(noise, before).startswith("no measurable change")


def test_segmentation_baselines_train_save_and_load(tmp_path):
    """`smfd train mask ... --set arch=unet|unetplusplus` builds the smp baselines; their checkpoints
    rebuild from the stored config like the mask generator's."""
    import torch

    from smfd import checkpoint
    from smfd.models import SegBaseline, SegBaselineConfig, build, count_parameters
    from smfd.train import TrainSettings

    counts = {}
    for arch in ("unet", "unetplusplus"):
        config = TrainSettings("mask", ("unused",), str(tmp_path), config={"arch": arch}).model_config()
        assert config == SegBaselineConfig(arch=arch)
        model = build(config).eval()
        counts[arch] = count_parameters(model)["total"]
        path = checkpoint.save(tmp_path / f"{arch}.safetensors", model)
        loaded = checkpoint.load(path)
        assert isinstance(loaded, SegBaseline) and loaded.config == config
        x = torch.rand(1, 1, 64, 64)
        with torch.no_grad():
            y = loaded(x)
            assert y.shape == (1, 5, 64, 64) and torch.allclose(y, model(x))
    assert counts == {"unet": 24_449_685, "unetplusplus": 26_093_717}  # the figures the README reports
    with pytest.raises(ValueError, match="arch must be one of"):
        TrainSettings("mask", ("unused",), str(tmp_path), config={"arch": "segformer"}).model_config()
    with pytest.raises(ValueError, match="multiples of 32"):
        build(SegBaselineConfig())(torch.rand(1, 1, 48, 48))


def test_stored_thesis_scores_are_made_anew_when_the_restorer_computes_otherwise(tmp_path, monkeypatch):
    """A row's stored scores are keyed by its checkpoint, the faces and smfd.restorer.PATH_VERSION,
    so a release that restores differently from the same weights cannot mix old and new rows."""
    import smfd.restorer

    weights = tmp_path / "best.safetensors"
    weights.write_bytes(b"weights")
    pairs = [thesis.Pair("face-a", tmp_path / "a.png", tmp_path / "a.png")]
    key = thesis._fingerprint(weights, pairs=pairs)
    assert thesis._fingerprint(weights, pairs=pairs) == key
    monkeypatch.setattr(smfd.restorer, "PATH_VERSION", smfd.restorer.PATH_VERSION + 1)
    assert thesis._fingerprint(weights, pairs=pairs) != key
    calls = []
    store = tmp_path / "scores.json"
    for _ in range(2):
        thesis._cached(store, thesis._fingerprint(weights, pairs=pairs), lambda: calls.append(1) or {"psnr": [1.0]})
    assert len(calls) == 1
    thesis._cached(store, key, lambda: calls.append(1) or {"psnr": [2.0]})
    assert len(calls) == 2


def test_trained_rows_are_scored_by_their_network_alone(pairs_dir, random_weights):
    """Tables 4.1, 4.3 and 4.4 score a row's network on its own, one pass, as training validates it:
    not through the Restorer, whose colour match hides a colour offset of the output (part of what
    the post-processing block changes) and whose mirror-image average is not the thesis'."""
    from smfd import checkpoint
    from smfd.images import to_uint8
    from smfd.models import one_hot_mask

    pair = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp", pairs_dir / "masks")[0]
    blurry, _, truth = pair.load()
    x = torch.from_numpy(blurry.copy()).permute(2, 0, 1)[None].float() / 255
    deblur = checkpoint.load(random_weights / "smfd_unet.safetensors", "cpu")
    assert deblur.config.post_process
    with torch.inference_mode():
        alone = to_uint8(deblur(x, one_hot_mask(torch.from_numpy(truth)[None].long())).clamp(0, 1)[0]
                         .permute(1, 2, 0).numpy())
    lab = type("Lab", (), {"device": "cpu"})()
    assert np.array_equal(thesis._restore_with(lab, deblur, False)(blurry, truth), alone)

    mask_model = checkpoint.load(random_weights / "mask_generator.safetensors", "cpu")
    with torch.inference_mode():
        predicted = mask_model(thesis.mask_input(mask_model.config, x))
    score = metrics.SegmentationScore(5)
    score.add(predicted[0].argmax(0).numpy().astype(np.uint8), truth)
    assert thesis.segmentation_scores(mask_model, [pair])["mean_dice"] == pytest.approx(score.mean_dice() * 100)


def test_table_42_makes_kept_results_anew_for_other_weights(pairs_dir, random_weights, tmp_path, monkeypatch):
    """Table 4.2's results kept from an earlier sitting are reused only for the same weights and
    faces: other --weights are evaluated anew, never shown under this sitting's heading."""
    from eval.report import COLUMNS, write_csv

    pairs = find_pairs(pairs_dir / "blurry", pairs_dir / "sharp", pairs_dir / "masks")
    calls = []

    def evaluate(pairs, methods, folder, options, overwrite):
        calls.append(dict(options.weights))
        rows = [{"method": m, "n": len(pairs), "psnr": 20.0 + len(calls), "status": "ok"} for m in methods]
        folder.mkdir(exist_ok=True)
        write_csv(folder / "results.csv", COLUMNS, rows)
        return rows

    monkeypatch.setattr(thesis, "evaluate", evaluate)
    other = tmp_path / "other"
    shutil.copytree(random_weights, other)

    codeformer = tmp_path / "codeformer.pth"  # a baseline's --weights file (never loaded here)
    codeformer.write_bytes(b"weights")

    def psnr_shown(weights, fidelity=0.5) -> str:
        lab = thesis.Lab("unused", tmp_path, tmp_path / "runs", pairs, thesis.Budget(),
                         thesis.EvalOptions(weights={"smfd": str(weights), "codeformer": str(codeformer)},
                                            fidelity=fidelity))
        line = next(line for line in thesis.table_42(lab, overwrite=False).splitlines() if line.startswith("| smfd |"))
        return line.split("|")[3].strip()

    assert [psnr_shown(random_weights), psnr_shown(random_weights)] == ["21.00", "21.00"]  # kept
    assert psnr_shown(other) == "22.00" and len(calls) == 2  # other weights: made anew
    (other / "smfd_unet.safetensors").write_bytes((other / "smfd_unet.safetensors").read_bytes())
    assert psnr_shown(other) == "23.00"  # the same path rewritten: made anew
    assert psnr_shown(other, fidelity=0.7) == "24.00"  # CodeFormer's other fidelity: made anew
    codeformer.write_bytes(b"fine-tuned")
    assert psnr_shown(other, fidelity=0.7) == "25.00"  # a baseline's file rewritten: made anew


def test_a_row_scored_at_an_earlier_best_says_so(tmp_path):
    """The samples column says what the row trained; where the best checkpoint (the one scored) came
    earlier, it says that too, so an 'equal budget' row is not read as scored at its end."""
    at_end = thesis.Run("r", tmp_path / "best.safetensors", 8192, 60.0, [], 8192)
    earlier = thesis.Run("r", tmp_path / "best.safetensors", 8192, 60.0, [], 6144)
    assert thesis._budget_cells(at_end) == ["8,192", "1.0"]
    assert thesis._budget_cells(earlier) == ["8,192 (scored: best at 6,144)", "1.0"]
