"""``smfd blur`` on real faces: files, folders, reproducibility, recipes, counting and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smfd import degrade
from smfd.blur_files import apply_to_photo
from smfd.cli import main
from smfd.images import read_image

SMFD = str(Path(sys.executable).with_name("smfd"))  # the console script of this environment


def smfd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([SMFD, *map(str, args)], capture_output=True, text=True, timeout=120)


def error_lines(stderr: str) -> list[str]:
    # splitlines also splits at the carriage returns of a progress bar.
    return [line for line in stderr.splitlines() if line.startswith("smfd: error:")]


@pytest.fixture(scope="module")
def face_files(celeba) -> list[Path]:
    return sorted((celeba / "images").glob("*.jpg"))[:3]


@pytest.fixture
def inbox(tmp_path, face_files) -> Path:
    """A folder of two real faces and three bad files."""
    folder = tmp_path / "in"
    folder.mkdir()
    for f in face_files[:2]:
        shutil.copy(f, folder / f.name)
    data = face_files[2].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image\n")
    return folder


def test_a_file(tmp_path, face_files, capsys):
    src = face_files[0]
    assert main(["blur", str(src), str(tmp_path / "out"), "--seed", "5"]) == 0
    png, js = tmp_path / "out" / f"{src.stem}.png", tmp_path / "out" / f"{src.stem}.json"
    out = read_image(png)
    assert out.shape == read_image(src).shape and not np.array_equal(out, read_image(src))
    meta = json.loads(js.read_text())
    assert meta["source"] == src.name and meta["seed"] == 5
    assert meta["options"] == degrade.PipelineOptions().to_dict()
    np.testing.assert_array_equal(degrade.apply(read_image(src), degrade.Recipe.from_dict(meta)), out)
    assert "blurred 1 of 1" in capsys.readouterr().out


def test_a_folder_with_bad_files_writes_the_good_ones(inbox, tmp_path, face_files):
    out = tmp_path / "out"
    result = smfd("blur", inbox, out, "--seed", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    for name, reason in (("truncated.jpg", "corrupt or truncated"), ("empty.jpg", "empty"),
                         ("notes.png", "not an image")):
        [line] = [e for e in errors if name in e]
        assert reason in line and str(inbox / name) in line
    assert "3 of 5 inputs failed" in errors[-1]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{f.stem}{ext}" for f in face_files[:2] for ext in (".png", ".json"))
    assert "blurred 2 of 5" in result.stdout


def test_a_16_bit_grey_png_keeps_its_brightness(tmp_path, face_files):
    grey = np.asarray(Image.open(face_files[0]).convert("L"), np.uint16) * 100  # at most 25,500 of 65,535
    Image.fromarray(grey).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == grey.shape + (3,)
    assert np.abs(image[..., 0].astype(int) - np.rint(grey / 257).astype(int)).max() == 0  # not stretched
    assert main(["blur", str(tmp_path / "deep.png"), str(tmp_path / "out"), "--seed", "2"]) == 0
    blurred = read_image(tmp_path / "out" / "deep.png")  # blur and noise keep the mean, to a level or two
    assert abs(float(blurred.mean()) - float(image.mean())) < 2


def test_a_grey_photo_is_blurred_in_grey(tmp_path, face_files):
    """One channel in, one channel out: noise drawn per colour channel would colour a grey photo."""
    Image.open(face_files[0]).convert("L").save(tmp_path / "grey.png")
    assert main(["blur", str(tmp_path / "grey.png"), str(tmp_path / "out"), "--seed", "4"]) == 0
    assert Image.open(tmp_path / "out" / "grey.png").mode == "L"


def test_transparency_depth_and_colour_profile_are_kept_as_restore_keeps_them(tmp_path, face_files):
    """The degraded image is written like a restored one: what the pipeline does not touch (the
    alpha channel, a colour profile, a grey image's one channel) stays; its values are the 8-bit
    ones degraded, not a 16-bit file's own low bits wherever the 8 bits came out unchanged."""
    from PIL import ImageCms

    face = Image.open(face_files[0])
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(512, dtype=np.uint8)[None] // 2, (512, 1))))
    (tmp_path / "in").mkdir()
    rgba.save(tmp_path / "in" / "clear.png", icc_profile=profile)
    Image.fromarray(np.asarray(face.convert("L"), np.uint16) * 256 + 100).save(tmp_path / "in" / "deep.png")
    assert main(["blur", str(tmp_path / "in"), str(tmp_path / "out"), "--seed", "3"]) == 0
    clear, deep = (Image.open(tmp_path / "out" / name) for name in ("clear.png", "deep.png"))
    assert clear.mode == "RGBA" and clear.info.get("icc_profile") == profile
    assert np.array_equal(np.asarray(clear.getchannel("A")), np.asarray(rgba.getchannel("A")))
    recipe = degrade.Recipe.from_dict(json.loads((tmp_path / "out" / "deep.json").read_text()))
    degraded = apply_to_photo(read_image(tmp_path / "in" / "deep.png"), recipe)
    assert deep.mode == "L" and np.array_equal(np.asarray(deep), degraded[..., 0])


def test_a_repeated_folder_run_is_one_line(tmp_path, face_files, capsys):
    """Every output there already: refused as a whole, not once per file."""
    out = tmp_path / "out"
    (tmp_path / "in").mkdir()
    for f in face_files[:2]:
        shutil.copy(f, tmp_path / "in" / f.name)
    assert main(["blur", str(tmp_path / "in"), str(out), "--seed", "1"]) == 0
    written = {p: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["blur", str(tmp_path / "in"), str(out), "--seed", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "and the 1 other outputs: exist already" in err, err
    assert {p: p.read_bytes() for p in out.iterdir()} == written


def test_names_with_one_32_bit_checksum_get_their_own_recipes():
    """Recipes were seeded by the name's CRC-32: these two (hex names, as celebamask_mini's) drew
    the same recipe, noise included."""
    import zlib

    from smfd.blur_files import rng_for_file

    names = ["5d5c18e4cd078a34b4db2ac85fbc1ed0.jpg", "6c088d0fc5b811089baf86ce80c024c8.jpg"]
    assert zlib.crc32(names[0].encode()) == zlib.crc32(names[1].encode())
    recipes = [degrade.sample_recipe(rng_for_file(0, Path(n)), degrade.PipelineOptions()) for n in names]
    assert recipes[0] != recipes[1]


def test_a_float_image_with_nan_and_the_pixel_limit_are_named(tmp_path, face_files):
    from smfd.errors import InputError
    from smfd.images import MAX_PIXELS, check_image_file

    grey = np.asarray(Image.open(face_files[0]).convert("L"), np.float32)
    grey[0, 0] = np.nan  # stretched by its maximum, one NaN would make the whole face black
    Image.fromarray(grey, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match=r"nan.tif: holds pixel values that are not numbers \(NaN or infinity\)$"):
        read_image(tmp_path / "nan.tif")
    # Headers only (a 1-bit PNG of that size is small): Pillow would warn from 89.5 megapixels on;
    # the limit is MAX_PIXELS, named with the size
    Image.new("1", (9500, 9500)).save(tmp_path / "under.png")  # 90.25 megapixels
    check_image_file(tmp_path / "under.png")
    Image.new("1", (10100, 10000)).save(tmp_path / "over.png")
    with pytest.raises(InputError, match=rf"over.png: image is too large \(10100x10000, limit {MAX_PIXELS // 10**6} "):
        check_image_file(tmp_path / "over.png")


def test_same_seed_gives_identical_bytes(tmp_path, face_files, capsys):
    """... wherever the option stands: between IN and OUT too."""
    src = face_files[0]
    runs = {}
    for name, args in (("a", [str(src), str(tmp_path / "a"), "--seed", "9"]),
                       ("b", [str(src), "--seed", "9", str(tmp_path / "b")]),
                       ("c", ["--seed", "10", str(src), str(tmp_path / "c")]),
                       ("d", ["--seed", "9", "--", str(src), str(tmp_path / "d")]),  # `--`: files named -x
                       ("e", [str(src), "--seed", "9", "--", str(tmp_path / "e")])):
        assert main(["blur", *args]) == 0
        runs[name] = [(tmp_path / name / f"{src.stem}{ext}").read_bytes() for ext in (".png", ".json")]
    assert runs["a"] == runs["b"] == runs["d"] == runs["e"]
    assert runs["a"][0] != runs["c"][0]


def test_a_saved_recipe_replays_to_the_identical_png(tmp_path, face_files, capsys):
    src = face_files[1]
    assert main(["blur", str(src), str(tmp_path / "first"), "--seed", "3"]) == 0
    recipe = tmp_path / "first" / f"{src.stem}.json"
    assert main(["blur", str(src), str(tmp_path / "again"), "--recipe", str(recipe)]) == 0
    first, again = (tmp_path / d / f"{src.stem}.png" for d in ("first", "again"))
    assert first.read_bytes() == again.read_bytes()
    record = json.loads((tmp_path / "again" / f"{src.stem}.json").read_text())
    assert record["replayed"] == str(recipe) and "seed" not in record and "options" not in record
    # what a replay would ignore is refused, as is what --count would
    capsys.readouterr()
    for extra, says in ((["--recipe", str(recipe), "--seed", "77"], "--recipe replays its own draws"),
                        (["--recipe", str(recipe), "--no-noise"], "--recipe replays its own draws"),
                        (["--jpeg-share", "0.5"], "--jpeg-share needs --jpeg"),
                        (["--count"], "--count prints the number of scenarios of the pipeline options: it takes no IN")):
        assert main(["blur", str(src), str(tmp_path / "third"), *extra]) == 2
        assert capsys.readouterr().err.startswith(f"smfd: error: {says}")
    assert main(["blur", "--count", "--seed", "3"]) == 2  # a count has no seed
    assert capsys.readouterr().err.startswith("smfd: error: --count prints the number of scenarios")
    assert not (tmp_path / "third").exists()


def test_count_prints_the_scenario_count(capsys):
    assert main(["blur", "--count"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1,743,335,166,888 scenarios")  # see test_degrade for the thesis' slip
    assert "1,176 per layer" in out and "21 scales" in out and "51 noise levels" in out
    assert main(["blur", "--count", "--layers", "2", "--sequences", "M", "G>M", "--gaussian-sizes", "15",
                 "--motion-sizes", "15", "21", "--directions", "vertical", "--scale-range", "2", "2.5",
                 "--no-noise"]) == 0
    expected = degrade.count_scenarios(degrade.PipelineOptions(
        layers=(2,), sequences=("M", "G>M"), gaussian_sizes=(15,), motion_sizes=(15, 21),
        directions=("vertical",), scale_range=(2.0, 2.5), noise=False))
    assert expected.total == (2 + 2) ** 2 * 6
    assert capsys.readouterr().out.startswith(f"{expected.total:,} scenarios")


def test_pipeline_options_reach_the_recipe(tmp_path, face_files, capsys):
    src = face_files[0]
    args = ["blur", str(src), str(tmp_path / "out"), "--layers", "2", "--sequences", "G>M", "--gaussian-sizes",
            "21", "--motion-sizes", "15", "--directions", "anti-diagonal", "--scale-range", "2.5", "2.5",
            "--noise-range", "7", "7"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "out" / f"{src.stem}.json").read_text())
    layer = [{"kind": "gaussian", "size": 21, "direction": None},
             {"kind": "motion", "size": 15, "direction": "anti-diagonal"}]
    assert meta["layers"] == [layer, layer]
    assert meta["scale"] == 2.5 and meta["noise_sigma"] == 7.0
    assert meta["options"]["gaussian_sizes"] == [21] and meta["options"]["layers"] == [2]
    # With the thesis' stages off, only JPEG compresses (every stage off would be refused: a copy).
    off = ["--no-blur", "--no-rescale", "--no-noise", "--jpeg", "90", "90"]
    assert main(["blur", str(src), str(tmp_path / "off"), *off]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "off" / f"{src.stem}.png"),
                                  degrade.jpeg_roundtrip(read_image(src), 90))
    meta = json.loads((tmp_path / "off" / f"{src.stem}.json").read_text())
    assert meta["layers"] == [] and meta["scale"] is None and meta["noise_sigma"] is None
    assert meta["jpeg_quality"] == 90


def test_existing_outputs_are_kept_without_overwrite(tmp_path, face_files, capsys):
    src, out = face_files[0], tmp_path / "out"
    assert main(["blur", str(src), str(out), "--seed", "1"]) == 0
    png = out / f"{src.stem}.png"
    before = png.read_bytes(), (out / f"{src.stem}.json").read_bytes()
    capsys.readouterr()
    assert main(["blur", str(src), str(out), "--seed", "2"]) == 2  # the only input: one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{png}: exists already" in err and "--overwrite" in err
    assert (png.read_bytes(), (out / f"{src.stem}.json").read_bytes()) == before
    assert main(["blur", str(src), str(out), "--seed", "2", "--overwrite"]) == 0
    assert png.read_bytes() != before[0]


def test_missing_input_and_output_file_are_one_line_errors(tmp_path, face_files, capsys):
    missing = smfd("blur", tmp_path / "nowhere.jpg", tmp_path / "out")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert error_lines(missing.stderr) == [f"smfd: error: {tmp_path / 'nowhere.jpg'}: no such file or folder"]
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    result = smfd("blur", face_files[0], taken)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [f"smfd: error: {taken}: OUT is a file, not a folder"]
    below = main(["blur", str(face_files[0]), str(taken / "sub")])
    assert below == 2 and taken.read_text() == "keep me"
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"smfd: error: {taken / 'sub'}: OUT cannot be made: {taken} is a file"


@pytest.mark.parametrize("args, message", [
    (["--layers", "0"], "layers"),
    (["--gaussian-sizes", "14"], "odd"),
    (["--layers", "1", "1"], "must not repeat"),
    (["--scale-range", "0.5", "2"], "--scale-range must be"),
    (["--seed", "-1"], "--seed"),
    (["--no-blur", "--layers", "2", "--gaussian-sizes", "5"], "--layers and --gaussian-sizes set the blur stage, "
                                                              "which --no-blur switches off"),
    (["--no-noise", "--noise-range", "1", "2"], "--noise-range set the noise stage, which --no-noise"),
    (["--no-blur", "--no-rescale", "--no-noise"], "without --jpeg leave every image as it is"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, face_files, capsys):
    assert main(["blur", str(face_files[0]), str(tmp_path / "out"), *args]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("smfd: error:") and message in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_recipe_files_are_named(tmp_path, face_files, capsys):
    cases = {"missing.json": None, "broken.json": "{not json", "wrong.json": json.dumps({"version": 1}),
             "folder.json": "dir"}
    for name, content in cases.items():
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_text(content)
        assert main(["blur", str(face_files[0]), str(tmp_path / "out"), "--recipe", str(path)]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"smfd: error: {path}:"), line


def test_a_recipe_replays_onto_a_png_input(tmp_path, face_files, capsys):
    """PNG in, PNG out: replaying onto the lossless file reproduces the pixels of apply()."""
    src = tmp_path / "face.png"
    Image.open(face_files[2]).save(src)
    recipe = degrade.sample_recipe(np.random.default_rng(4))
    recipe.save(tmp_path / "r.json")
    assert main(["blur", str(src), str(tmp_path / "out"), "--recipe", str(tmp_path / "r.json")]) == 0
    expected = degrade.apply(read_image(src), recipe)
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "face.png"), expected)


def test_two_inputs_with_one_stem_never_replace_each_other(tmp_path, face_files, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(face_files[0], folder / "face.jpg")
    Image.open(face_files[1]).save(folder / "face.png")
    assert main(["blur", str(folder), str(tmp_path / "out"), "--overwrite"]) == 1
    [line] = error_lines(capsys.readouterr().err)[:-1]
    assert line.startswith(f"smfd: error: {folder / 'face.png'}: same name as face.jpg")
    assert json.loads((tmp_path / "out" / "face.json").read_text())["source"] == "face.jpg"


def test_a_file_name_that_is_not_utf8_is_reported_escaped(tmp_path, face_files, random_weights):
    """On a UTF-8 terminal (PYTHONIOENCODING=utf-8 stands for one) a Latin-1 file name is printed
    with its byte escaped instead of failing the run on the line that reports it."""
    import os

    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    with open(os.path.join(folder, b"caf\xe9.jpg"), "wb") as f:
        f.write(face_files[0].read_bytes())
    run = subprocess.run([SMFD, "blur", os.fsdecode(folder), str(tmp_path / "out")], capture_output=True,
                         timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert run.returncode == 0, run.stderr
    assert b"blurred 1 of 1 images" in run.stdout
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"caf\xe9.json", b"caf\xe9.png"]
    run = subprocess.run([SMFD, "restore", os.fsdecode(folder), str(tmp_path / "restored"), "--weights",
                          str(random_weights)], capture_output=True, timeout=300,
                         env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert run.returncode == 0 and b"caf\\udce9.jpg: an aligned face crop" in run.stdout, run.stderr
    assert os.listdir(os.fsencode(tmp_path / "restored")) == [b"caf\xe9.png"]
