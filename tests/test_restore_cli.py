"""``smfd restore --aligned`` and ``smfd mask`` on real aligned faces, given masks, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from smfd import data
from smfd.cli import main
from smfd.images import read_image, read_labels, write_png
from smfd.labels import to_groups
from smfd.restorer import Restorer


@pytest.fixture(scope="module")
def faces(celeba, tmp_path_factory):
    """Three real aligned faces (the JPEGs as they are) and their 5-group masks as label PNGs."""
    root = tmp_path_factory.mktemp("faces")
    (root / "in").mkdir()
    (root / "masks").mkdir()
    for record in data.open_dataset(celeba)[:3]:
        shutil.copy(record.image, root / "in" / record.image.name)
        Image.fromarray(to_groups(data.load_classes(record))).save(root / "masks" / f"{record.id}.png")
    return root


def test_mask_writes_each_faces_group_labels_at_the_input_size(faces, tmp_path, capsys):
    """The shipped generator (a random one labels every pixel alike): each file holds its own
    face's mask, the one the library gives, close to the true one."""
    assert main(["mask", str(faces / "in"), str(tmp_path), "--engine", "pytorch"]) == 0
    outputs = sorted(tmp_path.glob("*.png"))
    assert [p.stem for p in outputs] == sorted(p.stem for p in (faces / "in").glob("*.jpg"))
    restorer = Restorer.from_pretrained(None, "cpu", "pytorch")
    truths = [read_labels(faces / "masks" / out.name) for out in outputs]
    for out in outputs:
        labels = read_labels(out)
        assert labels.shape == (512, 512) and len(np.unique(labels)) >= 3
        assert np.array_equal(labels, restorer.mask(read_image(faces / "in" / f"{out.stem}.jpg")))
        agreement = [np.mean(labels == truth) for truth in truths]  # 0.77-0.87 with its own, <= 0.68 others
        assert agreement[outputs.index(out)] == max(agreement) > 0.7, (out.name, agreement)
    assert "masked 3 of 3 images" in capsys.readouterr().out


def test_restore_with_given_masks(faces, tmp_path, random_weights):
    generated, given = tmp_path / "generated", tmp_path / "given"
    args = ["--weights", str(random_weights), "--aligned"]
    assert main(["restore", str(faces / "in"), str(generated), *args]) == 0
    assert main(["restore", str(faces / "in"), str(given), "--masks", str(faces / "masks"), *args]) == 0
    for src in (faces / "in").glob("*.jpg"):
        a, b = read_image(generated / f"{src.stem}.png"), read_image(given / f"{src.stem}.png")
        assert a.shape == b.shape == read_image(src).shape
        assert not np.array_equal(a, b)  # the mask steers the result


def test_a_mask_of_another_shape_is_refused_and_another_scale_is_not(faces, tmp_path, random_weights, capsys,
                                                                   monkeypatch):
    """A mask is resized to its face, so half the size is fine; a mask whose sides are not in the
    face's proportion belongs to another picture: one line naming it, before the networks load,
    nothing written."""
    src = sorted((faces / "in").glob("*.jpg"))[0]
    h, w = read_image(src).shape[:2]
    out = tmp_path / "out"
    args = ["restore", str(src), str(out), "--weights", str(random_weights)]
    write_png(tmp_path / "half" / f"{src.stem}.png", np.zeros((h // 2, w // 2), np.uint8))
    assert main([*args, "--masks", str(tmp_path / "half")]) == 0
    written = (out / f"{src.stem}.png").read_bytes()
    write_png(tmp_path / "other" / f"{src.stem}.png", np.zeros((13, 7), np.uint8))
    monkeypatch.setattr("smfd.restorer.Restorer.from_pretrained",
                        lambda *a, **k: pytest.fail("the networks were loaded for a face whose mask does not fit"))
    capsys.readouterr()
    assert main([*args, "--masks", str(tmp_path / "other"), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"smfd: error: {tmp_path / 'other' / src.stem}.png: a 7x13 mask for a {w}x{h} face: not the same shape"
    assert (out / f"{src.stem}.png").read_bytes() == written


def test_a_missing_mask_fails_only_that_face(faces, tmp_path, random_weights, capsys):
    masks = tmp_path / "masks"
    shutil.copytree(faces / "masks", masks)
    victim = sorted(masks.glob("*.png"))[0]
    victim.unlink()
    rc = main(["restore", str(faces / "in"), str(tmp_path / "out"), "--aligned", "--masks", str(masks),
               "--weights", str(random_weights)])
    err = capsys.readouterr().err
    assert rc == 1 and f"no mask for {victim.stem}" in err and "Traceback" not in err
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


def test_same_stem_twice_and_existing_outputs_are_kept(faces, tmp_path, random_weights, capsys):
    src = tmp_path / "in"
    shutil.copytree(faces / "in", src)
    first = sorted(src.glob("*.jpg"))[0]
    Image.open(first).save(first.with_suffix(".png"))  # a.jpg and a.png would both write OUT/a.png
    out = tmp_path / "out"
    assert main(["mask", str(src), str(out), "--weights", str(random_weights)]) == 1
    assert "same name as" in capsys.readouterr().err
    before = (out / f"{first.stem}.png").read_bytes()
    assert main(["mask", str(first), str(out), "--weights", str(random_weights)]) == 2  # before loading
    assert "exists already" in capsys.readouterr().err
    assert (out / f"{first.stem}.png").read_bytes() == before


@pytest.mark.parametrize("command", ["mask", "restore", "blur"])
def test_an_input_is_never_replaced_by_its_result(command, faces, tmp_path, random_weights, capsys, monkeypatch):
    """OUT the input folder with a PNG input: refused in one line before the networks load, even
    with --overwrite, and the input is left as it was."""
    src = tmp_path / "in"
    shutil.copytree(faces / "in", src)
    first = sorted(src.glob("*.jpg"))[0]
    Image.open(first).save(first.with_suffix(".png"))
    first.unlink()
    inputs = {p: p.read_bytes() for p in src.iterdir()}
    monkeypatch.setattr("smfd.restorer.Restorer.from_pretrained",
                        lambda *a, **k: pytest.fail("the networks were loaded for a run that would replace an input"))
    extra = {"mask": [], "restore": ["--aligned"], "blur": []}[command]
    weights = [] if command == "blur" else ["--weights", str(random_weights)]
    assert main([command, str(src), str(src), "--overwrite", *extra, *weights]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{first.with_suffix('.png')}: an input of this run" in err, err
    assert {p: p.read_bytes() for p in src.iterdir()} == inputs
    first.with_suffix(".png").unlink()  # JPEG inputs only: their results may go beside them
    monkeypatch.undo()
    assert main([command, str(src), str(src), *extra, *weights]) == 0
    assert all((src / f"{p.stem}.png").is_file() for p in src.glob("*.jpg"))


def test_a_repeated_command_is_refused_before_the_networks_load(faces, tmp_path, random_weights, capsys,
                                                                monkeypatch):
    out = tmp_path / "out"
    commands = {"mask": ["mask", str(faces / "in"), str(out / "mask")],
                "restore": ["restore", str(faces / "in"), str(out / "restore"), "--aligned"]}
    for args in commands.values():
        assert main(args + ["--weights", str(random_weights)]) == 0
    written = {p: p.read_bytes() for p in out.rglob("*.png")}
    monkeypatch.setattr("smfd.restorer.Restorer.from_pretrained",
                        lambda *a, **k: pytest.fail("the networks were loaded for a run with nothing to do"))
    capsys.readouterr()
    for args in commands.values():
        assert main(args + ["--weights", str(random_weights)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "and the 2 other outputs: exist already" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == written


def test_bad_inputs_exit_with_one_line(tmp_path, random_weights, capsys, monkeypatch):
    """A run with no usable input is one line naming it, before the networks load and before its
    output folder is made; so is a missing weights folder."""
    text, empty = tmp_path / "notes.png", tmp_path / "empty.png"
    text.write_text("not an image")
    empty.touch()
    tiny, truncated = tmp_path / "tiny.png", tmp_path / "truncated.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tiny)
    Image.fromarray(np.full((64, 64, 3), 99, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])  # a sound header, a cut body
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(face)
    frames, pages = tmp_path / "anim.gif", tmp_path / "scan.tif"  # only the first frame would be restored
    for path in (frames, pages):
        first, *rest = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (0, 128, 255)]
        first.save(path, save_all=True, append_images=rest)
    out = tmp_path / "o"
    with monkeypatch.context() as m:
        m.setattr("smfd.restorer.Restorer.from_pretrained",
                  lambda *a, **k: pytest.fail("the networks were loaded for a run with no usable input"))
        for args, says in ((["mask", str(text)], f"{text}: not an image file"),
                           (["restore", str(empty), "--aligned"], f"{empty}: file is empty"),
                           (["restore", str(tmp_path / "missing.jpg")], "no such file"),
                           (["blur", str(text)], f"{text}: not an image file"),
                           (["restore", str(tiny)], f"{tiny}: image is too small (4x4; at least 8 px on each side)"),
                           (["mask", str(tiny)], f"{tiny}: image is too small (4x4; at least 8 px on each side)"),
                           (["restore", str(truncated), "--aligned"], f"{truncated}: corrupt or truncated"),
                           (["restore", "/dev/null"], "/dev/null: not a regular file or folder"),
                           (["restore", str(frames)], f"{frames}: holds 3 frames or pages (an animation"),
                           (["blur", str(pages)], f"{pages}: holds 3 frames or pages"),
                           (["mask", ""], "the input path is empty"),
                           (["restore", str(face), "--faces-out", ""], "--faces-out is empty"),
                           (["restore", str(face), "--masks", ""], "--masks is empty"),
                           (["restore", str(face), "--faces-out", "/sys/smfd-crops"],
                            "/sys/smfd-crops: --faces-out cannot be written to (/sys: Permission denied)")):
            assert main([args[0], args[1], str(out), *args[2:]]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and says in err and not out.exists(), err
        for command in ("restore", "mask", "blur"):  # a folder that cannot be written: as root, /sys
            assert main([command, str(face), "/sys/smfd-out"]) == 2
            err = capsys.readouterr().err.strip()
            assert err == "smfd: error: /sys/smfd-out: OUT cannot be written to (/sys: Permission denied)", err
            assert main([command, str(face), ""]) == 2
            assert capsys.readouterr().err.strip() == "smfd: error: OUT is empty: name a folder"
    with monkeypatch.context() as m:  # Restorer.from_pretrained names it before the networks load
        m.setattr("smfd.restorer.load_networks",
                  lambda *a, **k: pytest.fail("the networks were loaded with a nonsense $SMFD_THREADS"))
        m.setenv("SMFD_THREADS", "abc")
        assert main(["restore", str(face), str(out), "--aligned"]) == 2
        assert capsys.readouterr().err.strip().startswith("smfd: error: $SMFD_THREADS must be a number")
    assert main(["restore", str(face), str(out), "--aligned", "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model weights not found" in err and "Traceback" not in err and not out.exists()
    for option, says in (("--weights", f"{face}: a file, not a weights folder (one holding mask_generator"),
                         ("--masks", f"{face}: --masks is a file, not a folder")):
        assert main(["restore", str(face), str(out), option, str(face), "--aligned"]) == 2
        assert capsys.readouterr().err.startswith(f"smfd: error: {says}")
    assert not out.exists()
    # No face in either photo: found before the networks load, one line, no output folder
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "photos" / name, noise)
    assert main(["restore", str(tmp_path / "photos"), str(out), "--weights", str(random_weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("no face found, nothing written (--detector cnn finds smaller and more turned faces) "
                        "(and the 1 other inputs cannot be used either)") and not out.exists(), err


def test_each_photo_is_searched_once_and_options_are_named_before_any_search(celeba, tmp_path, random_weights,
                                                                             capsys, monkeypatch):
    """The check before the networks load searches photos until one has a face: those without one
    are not searched a second time in the run, and options the Restorer reads, or that only whole
    photos use, are refused before any search (a photo's search can take minutes with cnn)."""
    import smfd.restore_files

    photos, out = tmp_path / "photos", tmp_path / "out"
    write_png(photos / "a.png", np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    shutil.copy(sorted((celeba / "images").glob("*.jpg"))[0], photos / "b.jpg")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # --device cuda refused on a GPU machine too
    monkeypatch.setattr("smfd.engines.openvino_version", lambda: None)  # a machine without OpenVINO
    searched = []
    real = smfd.restore_files.detect_faces
    monkeypatch.setattr(smfd.restore_files, "detect_faces",
                        lambda image, **kw: searched.append(image.shape) or real(image, **kw))
    for args, says in ((["--weights", str(tmp_path / "nowhere")], "model weights not found: "),
                       (["--device", "cuda"], "--device cuda"),
                       (["--engine", "openvino"], "the openvino engine needs OpenVINO"),
                       (["--aligned", "--min-face", "40"], "--min-face and --detector choose the faces of whole"),
                       (["--masks", str(photos), "--detector", "cnn"], "--min-face and --detector choose")):
        assert main(["restore", str(photos), str(out), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and not searched and not out.exists(), (args, err)
    assert main(["restore", str(photos), str(out), "--weights", str(random_weights)]) == 1
    assert searched == [(96, 128, 3), (512, 512, 3)]  # each once: the check's findings are kept
    assert "no face found" in capsys.readouterr().err and (out / "b.png").is_file() and not (out / "a.png").exists()


def test_a_swapped_weights_file_is_named(tmp_path, random_weights, capsys):
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for name, source in (("mask_generator", "smfd_unet"), ("smfd_unet", "mask_generator")):
        shutil.copy(random_weights / f"{source}.safetensors", swapped / f"{name}.safetensors")
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(face)
    assert main(["mask", str(face), str(tmp_path / "o"), "--weights", str(swapped)]) == 2
    err = capsys.readouterr().err
    assert "mask_generator.safetensors: holds a 'deblur' network" in err and "Traceback" not in err


def test_networks_the_restorer_cannot_feed_are_named_before_any_face(tmp_path, capsys):
    """A grey-image SMFD-UNet, a 2-channel generator, or one whose input scale gives a side its
    encoder cannot take: one line naming the file (they failed at the first face, or in the
    OpenVINO conversion with a multi-line trace)."""
    from smfd.models import MaskNetConfig, SMFDConfig
    from smfd.restorer import save_random_weights

    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(face)
    small = dict(encoder=(8, 8, 8, 8), decoder=(8, 8, 8), head=8)
    for name, mask, deblur, says in (
            ("grey", MaskNetConfig(**small), SMFDConfig(image_channels=1, mask_encoder=(8, 8, 8, 8), **small),
             "smfd_unet.safetensors reads 1 image channels: the restorer gives it the RGB face (3)"),
            ("two", MaskNetConfig(in_channels=2, **small), None,
             "mask_generator.safetensors reads 2 channels: the restorer gives a mask generator the grey (1) or RGB"),
            ("scale", MaskNetConfig(input_scale=0.3, **small), None,
             "mask_generator.safetensors looks at the 256 px face at input_scale 0.3, 76 px: its encoder needs a "
             "multiple of 8")):
        weights = save_random_weights(tmp_path / name, mask, deblur)
        assert main(["mask", str(face), str(tmp_path / "o"), "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, err


def test_aligned_crops_are_recognised_without_aligned(celeba, tmp_path, random_weights, capsys):
    """A folder of aligned 256x256 faces (held-out, blurred as in the benchmark) is restored as
    aligned crops, as with --aligned, and says so; --whole treats them as photos; a photo whose one
    face is elsewhere stays a photo."""
    import cv2

    folder = tmp_path / "in"
    for record in data.select(data.open_dataset(celeba), "test")[:3]:
        write_png(folder / f"{record.id}.png", data.benchmark_pair(record)[0])
    sharp = read_image(data.open_dataset(celeba)[0].image)
    photo = np.full((400, 400, 3), 120, np.uint8)
    photo[150:350, 20:220] = cv2.resize(sharp, (200, 200), interpolation=cv2.INTER_AREA)
    write_png(tmp_path / "photo" / "photo.png", photo)
    weights = ["--weights", str(random_weights)]
    assert main(["restore", str(folder), str(tmp_path / "auto"), *weights]) == 0
    said = capsys.readouterr().out
    assert main(["restore", str(folder), str(tmp_path / "aligned"), "--aligned", *weights]) == 0
    assert main(["restore", str(folder), str(tmp_path / "whole"), "--whole", *weights]) == 0
    whole_said = capsys.readouterr().out
    for src in sorted(folder.iterdir()):
        assert f"{src.name}: an aligned face crop (256x256), restored as one" in said
        assert f"{src.name}: 1 face found, 1 restored" in whole_said
        auto = read_image(tmp_path / "auto" / src.name)
        assert np.array_equal(auto, read_image(tmp_path / "aligned" / src.name))
        assert not np.array_equal(auto, read_image(tmp_path / "whole" / src.name))
    assert main(["restore", str(tmp_path / "photo"), str(tmp_path / "photo_out"), *weights]) == 0
    assert "photo.png: 1 face found, 1 restored" in capsys.readouterr().out
    # Crops of a --whole run are not left beside an output that is now the crop restored whole
    crops, first = tmp_path / "crops", sorted(folder.iterdir())[0]
    assert main(["restore", str(first), str(tmp_path / "c"), "--whole", "--faces-out", str(crops), *weights]) == 0
    assert len(list(crops.iterdir())) == 4
    assert main(["restore", str(first), str(tmp_path / "c"), "--faces-out", str(crops), "--overwrite", *weights]) == 0
    assert "restored as one (--whole treats it as a photo); it is its own face crop, none written" in \
        capsys.readouterr().out
    assert list(crops.iterdir()) == []
    assert main(["restore", str(folder), str(tmp_path / "x"), "--aligned", "--whole", *weights]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--whole: not allowed with argument --aligned" in err
    assert not (tmp_path / "x").exists()


def test_the_library_cli_loads_no_layer_above_it():
    """smfd (the library) <- baselines <- eval <- app: building the command line and running its
    library commands import none of the packages that stand on the library."""
    import subprocess
    import sys

    code = ("import sys, smfd.cli, smfd.restore_files, smfd.blur_files; smfd.cli.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'app', 'eval', 'baselines', 'gradio'}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_a_folder_in_the_way_and_an_unwritable_file_are_one_line(faces, tmp_path, random_weights, capsys,
                                                                 monkeypatch):
    """Not even --overwrite replaces a folder with a result, which is said before the networks load
    (with or without --overwrite); a file that cannot be written is named in one line (not an
    internal error)."""
    from smfd.errors import InputError

    src = sorted((faces / "in").glob("*.jpg"))[0]
    out = tmp_path / "out"
    (out / f"{src.stem}.png").mkdir(parents=True)
    with monkeypatch.context() as m:
        m.setattr("smfd.restorer.Restorer.from_pretrained",
                  lambda *a, **k: pytest.fail("the networks were loaded for an output that cannot be written"))
        for command in ("restore", "mask"):
            for overwrite in ([], ["--overwrite"]):
                assert main([command, str(src), str(out), "--weights", str(random_weights), *overwrite]) == 2
                err = capsys.readouterr().err.strip()
                assert err == f"smfd: error: {out / src.stem}.png: a folder of that name is in the way of this output"
    assert [p.name for p in out.iterdir()] == [f"{src.stem}.png"]
    with pytest.raises(InputError, match=r"^/sys/smfd\.png: cannot be written \(Permission denied\)$"):
        write_png("/sys/smfd.png", np.zeros((8, 8, 3), np.uint8))
