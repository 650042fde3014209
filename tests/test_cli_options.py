"""Options no run can use are refused up front: one line naming the option, exit status 2,
nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from smfd.cli import main
from smfd.train import TrainSettings

TRAIN = ["train", "deblur", "no-such-data", "--out"]
EVAL = ["eval", "--pairs", "no-blurry", "no-sharp", "--out"]
THESIS = ["eval", "--thesis-tables", "--data", "no-such-data", "--out"]
BLUR = ["blur", "no-such-image.png"]


@pytest.mark.parametrize("args,named", [
    (TRAIN + ["{out}", "--epochs", "0"], "--epochs"),
    (TRAIN + ["{out}", "--batch", "0"], "--batch"),
    (TRAIN + ["{out}", "--batch", "-4"], "--batch"),
    (TRAIN + ["{out}", "--patch", "0"], "--patch"),
    (TRAIN + ["{out}", "--patch", "48"], "--patch"),  # not a multiple of 32
    (TRAIN + ["{out}", "--patch", "512"], "--patch"),  # larger than --size
    (TRAIN + ["{out}", "--size", "-64"], "--size"),
    (TRAIN + ["{out}", "--size", "100"], "--size"),
    (TRAIN + ["{out}", "--lr-patience", "0"], "--lr-patience"),
    (TRAIN + ["{out}", "--early-stop", "0"], "--early-stop"),
    (TRAIN + ["{out}", "--samples-per-epoch", "0"], "--samples-per-epoch"),
    (TRAIN + ["{out}", "--samples-per-epoch", "8"], "--samples-per-epoch"),  # below --batch 16
    (TRAIN + ["{out}", "--samples-per-epoch", "24"], "--samples-per-epoch"),  # 1.5 batches of 16
    (TRAIN + ["{out}", "--val-faces", "0"], "--val-faces"),
    (TRAIN + ["{out}", "--seed", "-1"], "--seed"),
    (TRAIN + ["{out}", "--folds", "1"], "--folds"),
    (TRAIN + ["{out}", "--fold", "5"], "--fold"),
    (TRAIN + ["{out}", "--lr", "0"], "--lr"),
    (TRAIN + ["{out}", "--lr", "nan"], "--lr"),
    (TRAIN + ["{out}", "--workers", "-1"], "--workers"),
    (TRAIN + ["{out}", "--semantic", "-0.1"], "--semantic"),
    (TRAIN + ["{out}", "--semantic", "0.1"], "--semantic"),  # without --mask-model
    (TRAIN + ["{out}", "--set", "residual=yes"], "residual must be true or false, got 'yes'"),
    (TRAIN + ["{out}", "--set", "residual"], "--set"),
    (TRAIN + ["{out}", "--set", 'upsample="nearest"'], "--set"),
    (TRAIN + ["{out}", "--set", "no_such_field=1"], "--set"),
    (TRAIN + ["{out}", "--set", 'residual="x"'], "residual must be true or false"),  # a string counted as on
    (TRAIN + ["{out}", "--set", "contrast=-100"], "contrast must be a number in (0, 100]"),
    (TRAIN + ["{out}", "--set", "decoder=[128,-1]"], "decoder must be a list of positive integers"),
    (["train", "mask", "no-such-data", "--out", "{out}", "--set", "input_scale=2"], "input_scale must be"),
    (TRAIN + ["{out}", "--loss", "ssim"], "--loss"),
    (["train", "mask", "no-such-data", "--out", "{out}", "--loss", "mse"], "--loss"),
    (EVAL + ["{out}", "--grid-rows", "0"], "--grid-rows"),
    (EVAL + ["{out}", "--codeformer-fidelity", "2"], "--codeformer-fidelity"),
    (EVAL + ["{out}", "--methods", "smfd", "--codeformer-fidelity", "0.9"],
     "--codeformer-fidelity: only codeformer reads it, and it is not among the methods evaluated (smfd, blurry)"),
    (EVAL + ["{out}", "--methods", "smfd", "deconv", "--download"],
     "--download: none of the methods evaluated (smfd, deconv, blurry) has weights to download"),
    (THESIS + ["{out}", "--tables", "4.4", "--weights", "smfd=somewhere"],
     "--weights smfd=...: only tables 4.1, 4.2, 4.3 read the SMFD weights"),
    (["eval", "--make-pairs", "no-such-data", "--out", "{out}", "--limit", "0"], "--limit"),
    (["eval", "--make-pairs", "no-such-data", "--out", "{out}", "--seed", "-3"], "--seed"),
    (THESIS + ["{out}", "--budget", "ten"], "--budget: expected a number of training samples or 'thesis', got 'ten'"),
    (THESIS + ["{out}", "--budget", "100", "--samples-per-epoch", "1024"], "--budget"),
    (THESIS + ["{out}", "--samples-per-epoch", "8", "--batch", "16"], "--samples-per-epoch"),
    (THESIS + ["{out}", "--samples-per-epoch", "24", "--batch", "16"], "--samples-per-epoch"),
    (THESIS + ["{out}", "--budget", "0"], "--budget"),
    (THESIS + ["{out}", "--batch", "0"], "--batch"),
    (THESIS + ["{out}", "--patch", "16"], "--patch"),
    (THESIS + ["{out}", "--test-faces", "0"], "--test-faces"),
    (THESIS + ["{out}", "--folds", "1"], "--folds"),
    (THESIS + ["{out}", "--set", "residual=yes"], "residual must be true or false, got 'yes'"),
    (THESIS + ["{out}", "--set", "no_such_field=1"], "--set"),  # not after table 4.1's hours
    (THESIS + ["{out}", "--set", "head=\"wide\""], "--set"),
    (THESIS + ["{out}", "--set", 'residual="x"'], "residual must be true or false"),
    (THESIS + ["{out}", "--set", "use_mask=true"], "--set use_mask: table 4.3's rows set it themselves"),
    (["restore", "no-such-image.png", "{out}", "--min-face", "0"], "--min-face"),
    (["restore", "no-such-image.png", "{out}", "--min-face", "-5"], "--min-face"),
    (["restore", "no-such-image.png", "{out}", "--threads", "0"], "--threads"),
    (["mask", "no-such-image.png", "{out}", "--threads", "100000"], "--threads"),
    (BLUR + ["{out}", "--seed", "-1"], "--seed"),
    (BLUR + ["{out}", "--layers", "0"], "--layers"),
    (BLUR + ["{out}", "--layers", "1", "40"], "--layers must be"),
    (BLUR + ["{out}", "--noise-range", "5", "1000"], "--noise-range must be"),
    (BLUR + ["{out}", "--noise-range", "10", "5"], "--noise-range must be"),
    (BLUR + ["{out}", "--scale-range", "0.5", "2"], "--scale-range must be"),
    (BLUR + ["{out}", "--jpeg-share", "1.5"], "--jpeg-share"),  # refused with or without --jpeg
    (BLUR + ["{out}", "--jpeg", "0", "50"], "--jpeg must be"),
    (["demo", "--port", "0"], "--port"),
    (["demo", "--port", "70000"], "--port"),
])
def test_bad_options_are_refused_up_front(args, named, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([a.replace("{out}", str(out)) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("smfd: error:") and named in err, err
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("field,value,option", [
    ("epochs", 0, "--epochs"), ("batch", 0, "--batch"), ("size", 50, "--size"), ("patch", 0, "--patch"),
    ("val_faces", 0, "--val-faces"), ("early_stop", 0, "--early-stop"), ("k", 1, "--folds"),
    ("fold", -1, "--fold"), ("seed", -2, "--seed"), ("lr", float("inf"), "--lr"),
])
def test_the_python_api_refuses_the_same_values(field, value, option, tmp_path):
    with pytest.raises(ValueError, match=f"^{option} must be"):
        TrainSettings(task="deblur", data=("unused",), out=str(tmp_path), **{field: value})


def test_pairs_given_as_a_file_are_named_as_not_a_folder(tmp_path, capsys):
    file = tmp_path / "face.png"
    file.write_bytes(b"")
    assert main(["eval", "--pairs", str(file), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"smfd: error: {file}: not a folder"


@pytest.mark.parametrize("args", [
    TRAIN + ["{file}"],
    EVAL + ["{file}"],
    EVAL + ["{file}/sub"],
    THESIS + ["{file}"],
    THESIS + ["{dir}", "--runs", "{file}/runs"],
    ["eval", "--make-pairs", "no-such-data", "--out", "{file}"],
])
def test_an_output_folder_that_is_a_file_is_refused_up_front(args, tmp_path, capsys):
    """An output folder that is a file, or below one, is named in one line before any data is read
    (the data here do not exist, so a later check would name them instead); the file stays."""
    file = tmp_path / "results.txt"
    file.write_text("kept\n")
    assert main([a.replace("{file}", str(file)).replace("{dir}", str(tmp_path / "out")) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(file) in err and "is a file" in err, err
    assert file.read_text() == "kept\n" and not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_broken_link_is_refused_up_front(tmp_path, capsys):
    """A link to a folder that no longer exists: mkdir fails on it ("File exists") after the work."""
    (tmp_path / "out").symlink_to(tmp_path / "gone" / "sub")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "face.png")
    for args in (["blur", str(tmp_path / "face.png"), str(tmp_path / "out")],
                 ["blur", str(tmp_path / "face.png"), str(tmp_path / "out" / "deeper")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"OUT cannot be made: {tmp_path / 'out'} is a link to {tmp_path / 'gone' / 'sub'}, "
                            "which does not exist"), err


def test_an_unexpected_error_is_one_line_and_debug_gives_the_traceback(monkeypatch, capsys):
    """A multi-line message (torch.jit's trace errors run to dozens of lines) is cut to its first."""
    from smfd.cli import run_reported

    def fail():
        raise RuntimeError("the first line\nsecond line\nthird line")

    monkeypatch.delenv("SMFD_DEBUG", raising=False)
    assert run_reported(fail) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: the first line ..." in err and "second" not in err
    monkeypatch.setenv("SMFD_DEBUG", "1")
    with pytest.raises(RuntimeError, match="second line"):
        run_reported(fail)


def test_first_line_of_any_error():
    """The one way a message becomes a line (the CLI, the engines' log, the study database)."""
    from smfd.errors import first_line

    assert first_line(RuntimeError("\n  one  \ntwo")) == "one ..."
    assert first_line(KeyError()) == "KeyError"  # no message: its kind
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10 + " ..."
    assert first_line(ValueError("short")) == "short"


def test_python_m_smfd_takes_the_project_s_packages_not_a_users_files_of_that_name(tmp_path):
    """`python -m smfd` puts the working folder first on the path, where a user may keep an
    eval.py or app.py of their own."""
    import subprocess
    import sys

    (tmp_path / "eval.py").write_text('raise SystemExit("the user\'s own eval.py")\n')
    done = subprocess.run([sys.executable, "-m", "smfd", "eval", "--pairs", "nowhere", "nowhere", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nowhere: folder not found" in done.stderr, done.stderr
    version = subprocess.run([sys.executable, "-m", "smfd", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert version.stdout.strip() == f"smfd {__import__('smfd').__version__} (smfd-lab)"
