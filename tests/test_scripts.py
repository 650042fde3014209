"""The benchmark and figure scripts stay in step with the library they import.

Scripts are not imported by the package, so a moved name (``shared_data`` left ``smfd.data`` for
``smfd.paths``) breaks them silently; this checks every ``from <project module> import name`` in
``scripts/``, the ones inside functions too, and that every script answers ``--help``.
"""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smfd.images import write_png

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
PROJECT = ("smfd", "eval", "app", "baselines")


def project_imports(path: Path) -> list[tuple[str, str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.split(".")[0] in PROJECT]
    return found


def test_scripts_import_names_that_exist():
    assert len(SCRIPTS) >= 10, f"expected the project's scripts in {ROOT / 'scripts'}"
    missing = []
    for script in SCRIPTS:
        for module, name, line in project_imports(script):
            target = importlib.import_module(module)
            if name and not hasattr(target, name):
                try:  # `from package import submodule`
                    importlib.import_module(f"{module}.{name}")
                except ModuleNotFoundError:
                    missing.append(f"{script.name}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)


RUN_ALL = """
import contextlib, io, json, runpy, sys
args, paths, results = json.loads(sys.argv[1]), sys.argv[2:], {}
for path in paths:
    sys.argv = [path, *args]
    out, err = io.StringIO(), io.StringIO()
    code = "did not exit"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    except Exception as error:
        code = f"{type(error).__name__}: {error}"
    results[path] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def run_all(scripts: list[Path], *args: str) -> dict[str, list]:
    """Run each script with ``args`` in one interpreter (torch and friends are imported once):
    {path: [exit code, stdout, stderr]}."""
    import json

    done = subprocess.run([sys.executable, "-c", RUN_ALL, json.dumps(args), *map(str, scripts)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_script_answers_help():
    failed = [f"{path}: --help exited {code!r}" for path, (code, out, _) in run_all(SCRIPTS, "--help").items()
              if code not in (0, None) or "usage:" not in out]
    assert not failed, "\n".join(failed)


def test_every_script_names_a_nonsense_option_in_one_line():
    """The scripts parse their options as the smfd commands do (smfd.cli.script_parser): a mistake
    is one line naming it, exit status 2, not argparse's usage block."""
    failed = [f"{path}: exit {code!r}, stderr {err[-500:]!r}"
              for path, (code, _, err) in run_all(SCRIPTS, "--no-such-option").items()
              if code != 2 or len(err.strip().splitlines()) != 1 or not err.startswith("smfd: error: ")
              or not ("--no-such-option" in err or "arguments are required" in err)]  # positionals first
    assert not failed, "\n".join(failed)


def test_scripts_name_a_missing_dataset_in_one_line(tmp_path):
    """Every script ends through smfd.cli.run_reported, so unusable input is one line and exit
    status 2, as with the smfd command (not a traceback); run here for each script with --data."""
    for script in SCRIPTS:
        tail = script.read_text().split('if __name__ == "__main__":')[-1]
        assert "sys.exit(run_reported(main))" in tail, f"{script.name}: main is not run through run_reported"
    with_data = [s for s in SCRIPTS if ('"--data"' in s.read_text() or "add_face_set_options(" in s.read_text())
                 and s.name != "identity_figure.py"]
    assert len(with_data) >= 8
    failed = [f"{path}: exit {code!r}, stderr {err[-500:]!r}"
              for path, (code, _, err) in run_all(with_data, "--data", str(tmp_path / "no-such-faces")).items()
              if code != 2 or len(err.strip().splitlines()) != 1 or "dataset folder not found" not in err]
    assert not failed, "\n".join(failed)


def test_mask_scoring_scripts_name_a_dataset_without_masks_in_one_line(shared_data, tmp_path):
    """A folder of faces without label maps (FFHQ's layout) leaves the benchmark and the mask-error
    breakdown nothing to score: one line naming the folder, before any network is loaded."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for image in sorted((shared_data / "ffhq_mini").glob("*.jpg"))[:20]:
        shutil.copy(image, folder)
    scripts = [ROOT / "scripts" / name for name in ("benchmark_model.py", "mask_errors.py", "ssim_gap.py")]
    for path, (code, _, err) in run_all(scripts, "--data", str(folder)).items():
        assert code == 2 and err.strip() == f"smfd: error: {folder}: no test faces with a mask", err


def run_here(script: str, *args: str, capsys) -> subprocess.CompletedProcess:
    """A script run as from the command line, but in this interpreter (torch and friends are
    imported already: seconds less per run); its exit status and output as subprocess.run gives them."""
    import runpy

    argv, cwd, command = sys.argv, os.getcwd(), [str(ROOT / "scripts" / script), *map(str, args)]
    capsys.readouterr()
    sys.argv = list(command)
    os.chdir(ROOT)
    message = ""
    try:
        runpy.run_path(command[0], run_name="__main__")
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:  # sys.exit("text"): Python prints the text to stderr and exits with 1
            code, message = 1, f"{stop.code}\n"
    finally:
        sys.argv = argv
        os.chdir(cwd)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(command, code, out, err + message)


def test_exporting_weights_replaces_only_with_overwrite_and_only_the_same_kind(tmp_path, capsys):
    """The docstring's commands write into smfd/weights: an existing target is kept without
    --overwrite, and never replaced by the other network (the two arguments mixed up)."""
    weights = ROOT / "smfd" / "weights"
    target = tmp_path / "mask.safetensors"
    assert run_here("export_weights.py", weights / "mask_generator.safetensors", target, capsys=capsys).returncode == 0
    kept = target.read_bytes()
    done = run_here("export_weights.py", weights / "smfd_unet.safetensors", target, capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"smfd: error: {target}: exists already (use --overwrite to replace it)")
    done = run_here("export_weights.py", weights / "smfd_unet.safetensors", target, "--overwrite", capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == (f"smfd: error: {target}: holds a mask network; "
                                                            f"{weights / 'smfd_unet.safetensors'} is a deblur network")
    assert target.read_bytes() == kept
    assert run_here("export_weights.py", weights / "mask_generator.safetensors", target, "--overwrite",
                    capsys=capsys).returncode == 0
    kept = target.read_bytes()  # a run's fp32 best.safetensors made fp16 in place: its weights lost
    done = run_here("export_weights.py", target, tmp_path / "." / target.name, "--overwrite", capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == f"smfd: error: {tmp_path / '.' / target.name}: " \
        "TARGET is SOURCE; name another file"
    os.link(target, tmp_path / "linked.safetensors")  # the same file under another name
    done = run_here("export_weights.py", target, tmp_path / "linked.safetensors", "--overwrite", capsys=capsys)
    assert done.returncode == 2 and "TARGET is SOURCE" in done.stderr
    assert target.read_bytes() == kept


def test_figure_scripts_name_an_unusable_figure_file_before_any_face(shared_data, tmp_path, capsys):
    """The figure scripts replace their figure by design, but never their own input photo, a folder,
    or a file in a format they do not write: one line (exit 2) before the networks load."""
    photo = tmp_path / "photo.png"
    shutil.copy(shared_data / "realworld" / "whole" / "10045.png", photo)
    kept = photo.read_bytes()
    for option, says in (([str(photo)], "--out is an input of this run; name another file"),
                         ([str(tmp_path)], "--out is a folder; name the file to write"),
                         ([str(tmp_path / "figure.jpg")], "--out must end in .png")):
        done = run_here("make_whole_photo_figure.py", "--photo", photo, "--out", *option, capsys=capsys)
        assert done.returncode == 2 and done.stderr.strip() == f"smfd: error: {option[0]}: {says}", done.stderr
    assert photo.read_bytes() == kept
    done = run_here("identity_analysis.py", "--figure", tmp_path / "faces.txt", capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == \
        f"smfd: error: {tmp_path / 'faces.txt'}: --figure must end in .png or .pdf or .svg", done.stderr


@pytest.mark.parametrize("option", ["--json", "--per-face"])
def test_the_benchmark_names_an_output_file_that_exists_before_it_starts(option, tmp_path, capsys):
    """benchmark_model.py has no --overwrite: an existing --json or --per-face file is one line
    (exit 2) before any face is restored, and stays as it was."""
    kept = tmp_path / "figures.txt"
    kept.write_text("an earlier run's\n")
    done = run_here("benchmark_model.py", option, str(kept), capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == f"smfd: error: {kept}: {option} exists already " \
        "(choose another file)", done.stderr
    assert kept.read_text() == "an earlier run's\n" and "benchmark" not in done.stdout


def test_the_benchmark_refuses_one_file_for_json_and_per_face(tmp_path, capsys):
    same = tmp_path / "figures.out"
    done = run_here("benchmark_model.py", "--json", same, "--per-face", tmp_path / "." / "figures.out", capsys=capsys)
    assert done.returncode == 2 and not same.exists() and "benchmark" not in done.stdout
    assert f"error: --json and --per-face name one file ({same}): the figures would replace the faces'" \
        in done.stderr, done.stderr


def test_mask_scoring_scripts_name_a_bad_face_file_before_the_first_face(celeba, tmp_path):
    """A mask file that is not an image is one line naming it before any face is restored (it was
    found at that face, after the faces before it)."""
    from smfd import data

    folder = tmp_path / "faces"
    records = [r for r in data.select(data.open_dataset(celeba), "test") if r.has_mask][:3]
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for record in records:
        shutil.copy(record.image, folder / "images" / record.image.name)
        shutil.copy(record.mask, folder / "masks" / record.mask.name)
    broken = folder / "masks" / records[-1].mask.name
    broken.write_text("not a mask")
    scripts = [ROOT / "scripts" / name for name in ("benchmark_model.py", "mask_errors.py", "ssim_gap.py")]
    for path, (code, out, err) in run_all(scripts, "--data", str(folder)).items():
        assert code == 2 and err.strip() == f"smfd: error: {broken}: not an image file (unrecognised format)", err
        assert "faces" not in out, path


def test_bench_faces_random_networks_are_the_shipped_size(tmp_path):
    """--random-weights times networks of the shipped configurations (it timed the thesis' widths,
    2.8x slower per face, for a figure the README gave as the shipped model's)."""
    import runpy

    from smfd.restorer import load_networks

    script = runpy.run_path(str(ROOT / "scripts" / "bench_faces.py"))
    random = script["random_restorer"]("cpu")
    assert [random.mask_model.config, random.deblur_model.config] == [m.config for m in load_networks(None)]


def test_the_device_pack_keeps_the_split_and_leaves_out_the_test_faces(shared_data, tmp_path, capsys):
    from smfd import data

    out = tmp_path / "pack"
    run = run_here("pack_for_device.py", "--data", str(shared_data),
                          "--out", str(out), "--budget-mb", "40", capsys=capsys)
    assert run.returncode == 0, run.stderr
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size <= 40 * 2**20 and "FFHQ faces" in run.stdout
    # FFHQ's re-encoded copies of two CelebAMask-HQ test faces (tests/test_train.py) stay behind:
    # on the device there are no test faces for smfd train to find them by
    assert "copies of CelebAMask-HQ test faces: 00144 (= b79692" in run.stdout, run.stdout
    packed_ffhq = {r.id for r in data.open_dataset(out / "ffhq_mini")}
    assert "00250" in packed_ffhq and not {"00144", "00240"} & packed_ffhq  # 00250: the budget reached past them
    packed = data.open_dataset(out / "celebamask_mini")
    original = data.open_dataset(shared_data / "celebamask_mini")
    for part in ("train", "val"):  # the same faces train and validate as from the originals
        assert [r.id for r in data.select(packed, part)] == [r.id for r in data.select(original, part)]
    assert not data.select(packed, "test") and all(r.has_mask for r in packed)
    assert data.open_dataset(out / "ffhq_mini")  # FFHQ while the budget lasts, as plain images
    again = run_here("pack_for_device.py", "--data", str(shared_data),
                            "--out", str(out), capsys=capsys)
    assert again.returncode == 2 and again.stderr.strip() == f"smfd: error: {out}: exists already; remove it first"
    small = tmp_path / "made" / "small"  # a pack that does not fit leaves nothing, not even folders made for it
    run = run_here("pack_for_device.py", "--data", str(shared_data),
                          "--out", str(small), "--budget-mb", "1", capsys=capsys)
    assert run.returncode == 2 and "CelebAMask-HQ faces fit in 1 MiB: raise --budget-mb" in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"]

    # A damaged face is named here, not in a failed training run on the device.
    faces = tmp_path / "data" / "celebamask_mini"
    records = data.select(original, "trainval")[:3]
    for sub in ("images", "masks"):
        (faces / sub).mkdir(parents=True)
    for record in records:
        shutil.copy(record.image, faces / "images" / record.image.name)
        shutil.copy(record.mask, faces / "masks" / record.mask.name)
    broken = faces / "images" / records[1].image.name
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    run = run_here("pack_for_device.py", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "p3"), capsys=capsys)
    assert run.returncode == 2 and run.stderr.startswith(f"smfd: error: {broken}: "), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "p3").exists()


def test_identity_analysis_warps_a_true_mask_by_at_most_its_amplitude(shared_data, capsys):
    """--warp A moves the true mask's pixels by a smooth displacement of at most A pixels: A = 0
    leaves it as it is, a larger A lowers its facial-parts Dice, labels stay labels; a nonsense
    amplitude is one line naming it, before any face is restored."""
    import numpy as np

    from smfd import data, labels, metrics

    spec = importlib.util.spec_from_file_location("identity_analysis", ROOT / "scripts" / "identity_analysis.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = next(r for r in data.select(data.open_dataset(shared_data / "celebamask_mini"), "test") if r.has_mask)
    truth = data.benchmark_pair(record, 0)[2]
    assert np.array_equal(script.warped(truth, 0, np.random.default_rng(0)), truth)
    parts = labels.GROUPS.index("facial parts")
    dice = [metrics.dice(script.warped(truth, a, np.random.default_rng(0)), truth)[parts] for a in (2, 8, 24)]
    assert 1 > dice[0] > dice[1] > dice[2] > 0, dice
    moved = script.warped(truth, 8, np.random.default_rng(0))
    assert moved.dtype == truth.dtype and set(np.unique(moved)) <= set(np.unique(truth))

    done = run_here("identity_analysis.py", "--warp", "4,x", capsys=capsys)
    assert done.returncode == 2 and "expected comma-separated numbers of pixels, got '4,x'" in done.stderr


def test_identity_analysis_scales_the_restoration_s_change_and_splits_by_degradation(shared_data, capsys):
    """--residual F: the generated-mask restoration's change to the blurry face scaled by F; F = 1
    is that restoration itself (same distance and PSNR), and the table by thirds of the input's
    PSNR lists it; a factor outside (0, 2] is one line naming it."""
    import re

    done = run_here("identity_analysis.py", "--faces", "3",
                           "--residual", "0.5,1", "--data", str(shared_data / "celebamask_mini"), capsys=capsys)
    assert done.returncode == 0, done.stderr[-2000:]

    def row(name: str) -> list[str]:
        line = next(l for l in done.stdout.splitlines() if l.startswith(f"| {name} "))
        return [c.strip() for c in line.strip("|").split("|")]

    assert row("generated, change x 1")[1:] == row("generated mask")[1:]
    assert row("generated, change x 0.5")[4] != row("generated mask")[4]  # PSNR moves with the factor
    # the shipped network reads probabilities: the group fixes' own baseline is the one-hot row
    assert row("generated, one-hot")[1] != row("generated mask")[1]
    thirds = done.stdout.split("by thirds of the blurry input's PSNR")[1]
    assert re.search(r"\| generated, change x 0\.5 +\| [+-]\d\.\d{4} \(\d/1\)", thirds), thirds

    done = run_here("identity_analysis.py", "--residual", "0", capsys=capsys)
    assert done.returncode == 2 and "residual factors must lie in (0, 2], got '0'" in done.stderr
    # refused before any face is restored: too few faces for thirds, weights that are not there
    for extra, says in ((["--faces", "2"], "it needs at least 3, got 2"),
                        (["--weights", str(ROOT / "nowhere")], "model weights not found")):
        done = run_here("identity_analysis.py", *extra, "--data",
                               str(shared_data / "celebamask_mini"), capsys=capsys)
        assert done.returncode == 2 and says in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no progress bar: nothing restored


def test_compare_faces_reports_the_face_by_face_change_and_refuses_other_faces(tmp_path, capsys, celeba):
    """compare_faces.py: mean of AFTER - BEFORE over the same faces, its standard error and the
    faces that went down and up; files of different faces, or not from benchmark_model.py, are one
    line each (exit 2)."""
    import csv

    columns = ["id", "generated_id_dist", "truth_id_dist", "generated_psnr", "truth_psnr", "input_psnr", "input_id_dist"]

    def write(name: str, rows: list[list]) -> str:
        with open(tmp_path / name, "w", newline="") as f:  # each face's blurry input: 22 dB, distance 0.55
            csv.writer(f).writerows([columns, *[row + [22.0, 0.55] for row in rows]])
        return str(tmp_path / name)

    before = write("a.csv", [["f1", 0.5, 0.4, 24, 25], ["f2", 0.6, 0.5, 22, 23], ["f3", 0.4, 0.4, 26, 27]])
    after = write("b.csv", [["f1", 0.4, 0.4, 24, 25], ["f2", 0.5, 0.5, 23, 23], ["f3", 0.5, 0.4, 26, 27]])
    done = run_here("compare_faces.py", before, after, capsys=capsys)
    assert done.returncode == 0, done.stderr
    assert "| generated_id_dist | -0.0333 | 0.0667 | 2 | 1 |" in done.stdout, done.stdout
    assert "| generated_psnr | +0.3333 | 0.3333 | 0 | 1 |" in done.stdout, done.stdout
    other = write("c.csv", [["f1", 0.4, 0.4, 24, 25]])
    done = run_here("compare_faces.py", before, other, capsys=capsys)
    assert done.returncode == 2 and "hold different faces" in done.stderr
    # the same faces degraded otherwise (another --seed): the blurry inputs' figures differ
    reseeded = tmp_path / "g.csv"
    reseeded.write_text(Path(after).read_text().replace("22.0,0.55", "21.5,0.55", 1))
    done = run_here("compare_faces.py", before, str(reseeded), capsys=capsys)
    assert done.returncode == 2 and "face f1 was degraded otherwise (input_psnr 22.0000 against 21.5000)" \
        in done.stderr, done.stderr
    done = run_here("compare_faces.py", before, str(ROOT / "README.md"), capsys=capsys)
    assert done.returncode == 2 and "not a --per-face CSV" in done.stderr
    bad = write("d.csv", [["f1", 0.4, "abc", 24, 25]])
    odd = write("e.csv", [["f1", 0.4, 0.4, "nan", 25]])
    twice = write("f.csv", [["f1", 0.4, 0.4, 24, 25], ["f2", 0.6, 0.5, 22, 23], ["f1", 0.5, 0.4, 24, 25]])
    for path, says in ((bad, f"{bad}: face f1: a figure is not a number"),
                       (odd, f"{odd}: face f1: generated_psnr is not a finite number (nan)"),
                       (twice, f"{twice}: face f1 is listed more than once"),
                       (str(ROOT / "docs" / "whole_photo.png"), "not a readable CSV"),
                       (str(tmp_path / "absent.csv"), "absent.csv: file not found")):
        done = run_here("compare_faces.py", before, path, capsys=capsys)
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and says in done.stderr, done.stderr
    # identity_figure.py reads its CSV the same way (it needs input_id_dist too), and names an --out
    # it cannot write and weights it cannot read before any face is restored
    no_inputs = tmp_path / "no_inputs.csv"
    no_inputs.write_text("id,generated_id_dist\nf1,0.5\n")
    shipped = str(ROOT / "smfd" / "weights")
    figure = [sys.executable, str(ROOT / "scripts" / "identity_figure.py"), str(no_inputs), "--before", shipped]
    for extra, says in (([], f"{no_inputs}: not a --per-face CSV of benchmark_model.py (no input_psnr, "
                             "input_id_dist)"),
                        (["--out", str(ROOT / "README.md" / "f.png")], "README.md: --out is a file, not a folder"),
                        (["--out", str(tmp_path / "f.txt")], "f.txt: --out must end in .png or .pdf or .svg"),
                        (["--after", str(tmp_path)], "model weights not found")):
        done = subprocess.run([*figure, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and says in done.stderr, done.stderr
    # a real face whose blurry figures are not those of the faces it would show (another --seed or
    # --jpeg): refused before any network loads, not drawn as if they were the faces ranked
    face = sorted(p.stem for p in (celeba / "images").glob("*.jpg"))[0]
    ranked = tmp_path / "ranked.csv"
    ranked.write_text(f"id,generated_id_dist,input_psnr,input_id_dist\n{face},0.5,22.0,0.55\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "identity_figure.py"), str(ranked), "--before",
                           shipped, "--data", str(celeba), "--out", str(tmp_path / "f.png")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"{ranked}: face {face} was degraded otherwise (input_psnr " in done.stderr, \
        done.stderr


def test_the_benchmark_s_jpeg_option_adds_compression_and_keeps_the_thesis_draws(shared_data, tmp_path, capsys):
    """benchmark_model.py --jpeg LOW HIGH: every face gets the pipeline's JPEG stage after the same
    thesis draws (blur, scale, noise), so the two benchmarks differ only by the compression; a
    range that no JPEG quality fits is one line naming it, before any model is loaded."""
    import dataclasses

    import numpy as np

    from smfd import data, degrade

    record = next(r for r in data.select(data.open_dataset(shared_data / "celebamask_mini"), "test") if r.has_mask)
    thesis = data.benchmark_pair(record, 0)
    jpeg = data.benchmark_pair(record, 0, options=degrade.PipelineOptions(jpeg=True, jpeg_range=(30, 40)))
    assert dataclasses.replace(jpeg[3], jpeg_quality=None) == thesis[3]
    assert thesis[3].jpeg_quality is None and 30 <= jpeg[3].jpeg_quality <= 40
    assert np.array_equal(jpeg[1], thesis[1]) and not np.array_equal(jpeg[0], thesis[0])

    # --jpeg-at crop: the thesis pair's 256x256 blurry face compressed at the drawn quality
    import json

    from smfd import metrics

    out = tmp_path / "crop.json"
    done = run_here("benchmark_model.py", "--faces", "1", "--engines",
                           "pytorch", "--jpeg", "30", "30", "--jpeg-at", "crop", "--json", str(out),
                           "--data", str(shared_data / "celebamask_mini"), capsys=capsys)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "JPEG quality 30-30 on the crop" in done.stdout
    expected = metrics.psnr(degrade.jpeg_roundtrip(thesis[0], 30), thesis[1])
    figures = json.loads(out.read_text())
    assert figures["jpeg_at"] == "crop"
    assert figures["restoration"]["blurry input"]["psnr"] == pytest.approx(expected, abs=1e-6)
    assert abs(expected - metrics.psnr(thesis[0], thesis[1])) > 0.01  # the compression shows

    done = run_here("benchmark_model.py", "--jpeg", "90", "30", capsys=capsys)
    assert done.returncode == 2 and "--jpeg: invalid pipeline option: jpeg_range" in done.stderr, done.stderr
    done = run_here("benchmark_model.py", "--jpeg-at", "crop", capsys=capsys)
    assert done.returncode == 2 and "--jpeg-at crop needs --jpeg LOW HIGH" in done.stderr, done.stderr


def test_the_benchmark_s_colour_widths_post_process_the_restorer_s_own_output(shared_data, tmp_path, capsys):
    """benchmark_model.py --split val --colour-sigmas 48 0: the validation faces of the training
    runs (for choosing a setting without the test faces), each restored once and shown with the
    input's colours kept at 48 px and with the network's own; the two rows are what
    Restorer.restore gives with keep_colours on (the default width) and off."""
    import json

    from smfd import data, metrics
    from smfd.restorer import COLOUR_SIGMA, Restorer

    folder = shared_data / "celebamask_mini"
    out = tmp_path / "val.json"
    done = run_here("benchmark_model.py", "--faces", "1", "--engines",
                           "pytorch", "--split", "val", "--colour-sigmas", f"{COLOUR_SIGMA:g}", "0", "--json", str(out),
                           "--data", str(folder), capsys=capsys)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 validation faces" in done.stdout and "local colour" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["split"] == "val" and figures["colour_sigmas"] == [COLOUR_SIGMA, 0]

    record = next(r for r in data.select(data.open_dataset(folder), "val") if r.has_mask)
    blurry, sharp, _, _ = data.benchmark_pair(record)
    restorer = Restorer.from_pretrained(engine="pytorch")
    rows = figures["restoration"]
    kept = rows[f"SMFD, generated masks [pytorch, colours {COLOUR_SIGMA:g} px]"]
    raw = rows["SMFD, generated masks [pytorch, raw colours]"]
    assert kept["psnr"] == pytest.approx(metrics.psnr(restorer.restore(blurry), sharp), abs=1e-3)
    assert raw["psnr"] == pytest.approx(metrics.psnr(restorer.restore(blurry, keep_colours=False), sharp), abs=1e-3)
    assert kept["psnr"] != raw["psnr"] and kept["local_colour"] != raw["local_colour"]

    # one width that is not the restorer's is still named in its rows; --per-face records the width;
    # folders of --json and --per-face that do not exist yet are made
    faces, summary = tmp_path / "new" / "raw.csv", tmp_path / "newer" / "raw.json"
    done = run_here("benchmark_model.py", "--faces", "1", "--engines",
                           "pytorch", "--split", "val", "--colour-sigmas", "0", "--json", str(summary),
                           "--per-face", str(faces), "--data", str(folder), capsys=capsys)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(summary.read_text())["restoration"]
    assert "SMFD, generated masks [raw colours]" in rows and "SMFD, generated masks" not in rows
    import csv

    (face,) = csv.DictReader(faces.open())
    assert face["id"] == record.id and float(face["colour_sigma"]) == 0
    assert float(face["generated_psnr"]) == pytest.approx(raw["psnr"], abs=1e-9)


def test_mask_errors_breaks_the_group_dice_down_by_class(shared_data, capsys):
    """scripts/mask_errors.py counts each true class's pixels by the group the shipped generator
    gives them, reading the blurry face or (--on sharp) the sharp one: every pixel once, the group
    Dice it prints is the benchmark's (dataset-level), and the two readings differ."""
    import numpy as np

    from smfd import data, labels, metrics
    from smfd.restorer import Restorer

    spec = importlib.util.spec_from_file_location("mask_errors", ROOT / "scripts" / "mask_errors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records = [r for r in data.select(data.open_dataset(shared_data / "celebamask_mini"), "test") if r.has_mask][:3]
    restorer = Restorer.from_pretrained(None, "cpu", "pytorch")
    readings = {}
    for on in ("blurry", "sharp"):
        counts, faces = script.class_by_group(records, restorer, 0, on)
        assert counts.shape == (19, 5) and counts.sum() == 3 * 256 * 256
        assert faces[labels.CLASSES.index("skin")] == 3 and faces.max() <= 3
        score = metrics.SegmentationScore(5)
        for record in records:
            blurry, sharp, groups, _ = data.benchmark_pair(record, 0)
            score.add(restorer.mask(blurry if on == "blurry" else sharp), groups)
        group_counts = np.stack([np.bincount(labels.CLASS_TO_GROUP, weights=counts[:, g], minlength=5)
                                 for g in range(5)], 1)  # true group x predicted group
        assert np.array_equal(np.diag(group_counts), score.counts[:, 0])
        assert np.array_equal(group_counts.sum(0), score.counts[:, 1])  # pixels given each group
        script.report(counts, faces)
        out = capsys.readouterr().out
        for g, name in enumerate(labels.GROUPS):
            if not np.isnan(score.dice()[g]):
                assert f"{name}: Dice {score.dice()[g]:.4f}" in out
        assert f"mean Dice over the groups: {score.mean_dice():.4f}" in out
        readings[on] = counts
    assert not np.array_equal(readings["blurry"], readings["sharp"])


def test_mask_errors_reports_recall_and_shares_of_the_errors(capsys):
    """By hand: 100 skin pixels, 10 of them given facial parts; 20 nose pixels, 5 given face
    skin; 50 background. Facial parts: Dice 2 x 15 / (25 + 20), nose recall 0.75 and 5 of the
    group's 15 errors, skin 10 of them; a class of another group under 2 % of the errors is left out."""
    import numpy as np

    from smfd import labels

    spec = importlib.util.spec_from_file_location("mask_errors", ROOT / "scripts" / "mask_errors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    counts = np.zeros((19, 5), np.int64)
    skin, nose, hair = (labels.CLASSES.index(c) for c in ("skin", "nose", "hair"))
    counts[skin, 1], counts[skin, 2], counts[nose, 2], counts[nose, 1], counts[0, 0] = 90, 10, 15, 5, 50
    counts[hair, 3], counts[hair, 2] = 1000, 0
    faces = np.zeros(19, np.int64)
    faces[[0, skin, nose, hair]] = 1
    script.report(counts, faces)
    out = capsys.readouterr().out
    assert f"facial parts: Dice {30 / 45:.4f}; 5 pixels missed, 10 false" in out
    assert "  nose           1        20   0.750  5 (0.33)" in out
    assert "false pixels on: skin 10 (0.67)" in out and "hair 0" not in out
    assert f"face skin: Dice {2 * 90 / (95 + 100):.4f}; 10 pixels missed, 5 false" in out
    assert "accessories: Dice - (in neither map)" in out
    assert f"mean Dice over the groups: {np.mean([1, 180 / 195, 30 / 45, 1]):.4f}" in out


def test_ssim_gap_splits_the_gap_between_the_mask_paths_by_group(shared_data, capsys):
    """scripts/ssim_gap.py: the groups' shares of the pixels sum to 1 and their parts of the gap to
    the difference of the two paths' SSIM, which are the benchmark's SSIM of each restoration; the
    part on wrongly grouped pixels is part of each group's, and those pixels are where the shipped
    generator's group is not the true one (a random generator gives one group everywhere)."""
    import numpy as np

    from smfd import data, metrics
    from smfd.restorer import Restorer

    spec = importlib.util.spec_from_file_location("ssim_gap", ROOT / "scripts" / "ssim_gap.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records = [r for r in data.select(data.open_dataset(shared_data / "celebamask_mini"), "test") if r.has_mask][:2]
    restorer = Restorer.from_pretrained(None, "cpu", "pytorch")
    scores = script.gap_by_group(records, restorer, 0)
    blurry, sharp, groups, _ = data.benchmark_pair(records[0], 0)
    r = metrics.ssim_radius()
    wrong = (restorer.mask(blurry) != groups)[r:-r, r:-r]
    assert scores["wrong_pixels"][0].sum() == pytest.approx(wrong.mean(), abs=1e-12) and 0 < wrong.mean() < 0.5
    assert scores["generated"][0] == pytest.approx(metrics.ssim(restorer.restore(blurry), sharp), abs=1e-9)
    assert scores["truth"][0] == pytest.approx(metrics.ssim(restorer.restore(blurry, groups), sharp), abs=1e-9)
    assert np.allclose(scores["pixels"].sum(1), 1)
    assert np.allclose(scores["gap"].sum(1), scores["truth"] - scores["generated"])
    assert np.all(scores["wrong_pixels"] <= scores["pixels"])
    script.report(scores)
    out = capsys.readouterr().out
    assert f"gap {np.mean(scores['truth'] - scores['generated']):+.4f}" in out and "| face skin |" in out


def test_plot_training_draws_a_log_and_names_a_run_without_one(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,seconds,lr,psnr\n1,60,0.001,22.5\n2,60,0.0002,23.1\n")
    done = run_here("plot_training.py", str(run), "--out", str(tmp_path / "figs" / "c.png"), capsys=capsys)
    assert done.returncode == 0, done.stderr
    figure = np.asarray(Image.open(tmp_path / "figs" / "c.png").convert("RGB")).astype(int)
    curve = (np.abs(figure - (31, 119, 180)).max(axis=2) < 30).sum()  # matplotlib's first line colour
    assert figure.shape[1] > 300 and curve > 100, curve  # the curve and its markers are drawn
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.csv").touch()
    (tmp_path / "gap").mkdir()
    (tmp_path / "gap" / "log.csv").write_text("epoch,seconds,lr,psnr\n1,60,0.001,\n")
    for folder, out, says in (("empty", "d.png", "no epochs logged yet"), ("nowhere", "d.png", "no training log"),
                              ("gap", "d.png", "log.csv: row 1: psnr is not a number ('')"),
                              ("empty", "d.txt", "d.txt: --out must end in .png or .pdf or .svg")):
        done = run_here("plot_training.py", str(run), str(tmp_path / folder), "--out", str(tmp_path / out),
                        capsys=capsys)
        assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "d.png").exists()


def test_the_load_tests_name_bad_options_before_the_app_starts(tmp_path):
    """load_study.py: a nonsense number, address or photo folder is one line (exit 2), not an app
    started and a failure or a stack of connection errors a minute later; bench_thesis_rows.py's
    budget likewise before any training."""
    cases = [(["--duration", "nan"], "--duration"), (["--call-timeout", "0"], "--call-timeout"),
             (["--participants", "501"], "--participants"), (["--url", "notaurl"], "--url must be"),
             (["--photos", str(tmp_path / "nowhere")], "folder not found"), (["--flood", "-5"], "--flood"),
             (["--weights", str(tmp_path), "--random-weights"], "not allowed with argument --weights"),
             (["--url", "http://127.0.0.1:9", "--random-weights", "--study-db", "sqlite:///v.sqlite"],
              "--random-weights, --study-db: they start an app, which --url does not")]
    for args, says in cases:
        (code, _, err), = run_all([ROOT / "scripts" / "load_study.py"], *args).values()
        assert code == 2 and err.startswith("smfd: error: ") and says in err and len(err.strip().splitlines()) == 1, err
    # a budget below one epoch, in the script's own terms (it has no --samples-per-epoch)
    (code, _, err), = run_all([ROOT / "scripts" / "bench_thesis_rows.py"], "--budget", "512").values()
    assert code == 2 and "--budget must be at least one epoch's 1024 samples, got 512" in err, err


def test_the_speed_benchmark_refuses_a_folder_rate_it_cannot_time_and_uses_the_weights_named(
        tmp_path, capsys, celeba):
    """bench_speed.py's folder rate is (N faces - 1 face) / (N - 1): one face or more than the
    held-out split (151) would be a division by zero or a rate over faces never restored. --set
    changes the configs of --weights, so a folder that is not there is named. All before the
    networks load."""
    for faces, says in (("1", "--folder-faces 1: give 0 (no folder timing) or at least 2"),
                        ("500", f"500 held-out faces needed (--folder-faces, at least 8): the held-out split of "
                                f"{celeba} has 151")):
        done = run_here("bench_speed.py", "--data", celeba, "--folder-faces", faces, capsys=capsys)
        assert done.returncode == 2 and done.stderr.strip() == f"smfd: error: {says}", done.stderr
    done = run_here("bench_speed.py", "--data", celeba, "--weights", tmp_path / "none",
                    "--set", "decoder=[128,64,32]", capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip().startswith("smfd: error: model weights not found: "
                                                                   f"{tmp_path / 'none'}"), done.stderr


def test_the_face_template_is_measured_on_square_crops_only(tmp_path, capsys):
    """The template is a fraction of a square crop's side: a photo of another shape is named,
    before any face is searched, rather than bending the template."""
    write_png(tmp_path / "crop.png", np.zeros((64, 64, 3), np.uint8))
    write_png(tmp_path / "photo.png", np.zeros((40, 64, 3), np.uint8))
    done = run_here("measure_face_template.py", tmp_path, capsys=capsys)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"smfd: error: {tmp_path / 'photo.png'}: 64x40 is not a square face crop")
