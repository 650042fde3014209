"""The web app's logic without a browser: upload checks, masks and brush strokes, the blur lab's
recipe, the comparison against a fake baselines registry, feature maps, the study's trials,
vote storage under concurrency and restarts, and the Bradley-Terry analysis."""

from __future__ import annotations

import json
import multiprocessing
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import app  # noqa: F401  (switches telemetry off before gradio is imported)
import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image

from app import blur_tab, compare_tab, examples, face, features, learn_tab, restore_tab, study_stats
from app.context import AppContext
from app.study import CONTROL, Study, study_photos
from app.study_store import Vote, VoteStore
from app.uploads import checked_image, read_mask_upload, read_upload
from smfd import degrade, labels
from smfd.errors import InputError
from smfd.images import read_labels, resize_labels
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
    with pytest.raises(gr.Error, match=r"big.png: image is too large \(6000x6000; the web app takes up to 25"):
        read_upload(big)
    huge = png_with_declared_size(tmp_path / "huge.png", 20_000, 20_000)  # PIL's bomb check fires
    with pytest.raises(gr.Error, match=r"huge.png: image is too large"):
        read_upload(huge)


def test_checked_image_component_reads_uploads_through_the_checks(tmp_path):
    component = checked_image()
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    assert component.preprocess(ImageData(path=str(path), orig_name="x.png")).shape == (16, 16, 3)
    path.write_bytes(b"GIF89a broken")
    with pytest.raises(gr.Error, match="x.png: not an image file"):
        component.preprocess(ImageData(path=str(path), orig_name="x.png"))
    assert component.get_config()["format"] == "png"  # lossless to the browser and back


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
    return AppContext(restorer=FakeRestorer(), examples=examples.find_examples(None),
                      work_dir=tmp_path / "work", **extra)


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
    blurry, kernels, summary, text, path, lab_face = outputs[0]
    record = json.loads(text)
    assert record["seed"] == 7 and record["source"] == "astronaut" and record["noise_sigma"] is None
    assert [[op["kind"] for op in layer] for layer in record["layers"]] == [["gaussian", "motion"]] * 2
    assert all(layer[1]["direction"] == "vertical" for layer in record["layers"])
    replay = degrade.apply(sharp, degrade.Recipe.from_dict(json.loads(Path(path).read_text())))
    assert (replay == blurry).all()
    assert (outputs[1][0] == blurry).all() and outputs[1][4] != path  # same seed, own file
    assert kernels.ndim == 3 and kernels.shape[1] > kernels.shape[0]  # 4 kernels + PSF in a row
    assert lab_face.sharp is not None and (lab_face.blurry == blurry).all()
    with pytest.raises(gr.Error, match="sequence with Gaussian blur needs"):
        blur_tab.blur_lab(ctx, sharp, True, None, 0, *option_values(gaussian_sizes=[]))


def test_live_count_follows_the_options():
    assert "1,743,335,166,888 scenarios" in blur_tab.count_text(*option_values())
    few = blur_tab.count_text(*option_values(layers=[1], sequences=["M"], directions=["vertical"],
                                             noise_on=False))
    assert "126 scenarios" in few  # 6 motion sizes x 1 direction x 21 scales
    assert "do not make a pipeline" in blur_tab.count_text(*option_values(layers=[]))


def test_learn_tab_derives_the_count_and_names_the_thesis_slip():
    text = learn_tab.count_explained()
    assert "**1,176**" in text and "1,626,379,776" in text and "1,627,763,928" in text
    assert "**1,743,335,166,888**" in text and "1,743,940,018,728" in text
    other = learn_tab.count_explained(degrade.PipelineOptions(layers=(1,), noise=False))
    assert "slip" not in other and "1,176 x 21 x 1 = **24,696**" in other
    rows = learn_tab.ablation_rows()
    assert [r[0] for r in rows] == ["no-mask", "plain-upsampling", "attention-transpose",
                                    "attention-pixelshuffle", "full"]
    assert int(rows[0][3].replace(",", "")) < int(rows[-1][3].replace(",", ""))  # no mask branch


# ---------------------------------------------------------------- restore handlers

def test_restore_edit_truth_and_back_keep_track_of_the_mask(tmp_path):
    ctx = make_context(tmp_path)
    f = restore_tab.face_from_example(ctx, examples.BUILTIN, 3)
    assert f.sharp.shape == f.blurry.shape == (512, 512, 3) and f.truth is None
    f = f.with_truth(np.full((512, 512), 2, np.uint8))
    state, (before, after), report, files, editor, _ = restore_tab.restore(ctx, f, False, lambda *a, **k: None)
    assert state.mask_source == "generated" and (state.mask == 1).all()  # the fake generator
    assert "PSNR" in report and "mean Dice" in report and editor["background"].shape == (512, 512, 3)
    assert [Path(p).name for p in files] == ["astronaut_restored.png", "astronaut_mask.png"]
    assert (read_labels(files[1]) == 1).all()

    stroke = np.zeros((512, 512, 4), np.uint8)
    stroke[100:120, :, :3] = labels.GROUP_PALETTE[4]
    stroke[100:120, :, 3] = 255
    edited, *rest = restore_tab.restore_edited(ctx, state, {"layers": [stroke]}, lambda *a, **k: None)
    assert edited.mask_source == "edited" and (edited.mask[100:120] == 4).all() and (edited.mask[:100] == 1).all()
    assert (edited.restored == np.clip(f.blurry.astype(int) + 24, 0, 255)).all()  # the edited mask was used
    assert Path(rest[2][0]).parent != Path(files[0]).parent  # every request writes its own folder
    truth, *_ = restore_tab.restore_truth(ctx, edited, lambda *a, **k: None)
    assert truth.mask_source == "ground truth" and (truth.mask == 2).all()
    back, *_ = restore_tab.restore_generated(ctx, truth, lambda *a, **k: None)
    assert back.mask_source == "generated" and (back.mask == 1).all()
    with pytest.raises(gr.Error, match="no ground-truth mask"):
        restore_tab.restore_truth(ctx, face.Face("x", f.blurry), lambda *a, **k: None)


def test_whole_photo_mode_uses_the_photo_pipeline(tmp_path):
    class Report:
        def summary(self):
            return "2 faces found, 2 restored"

    calls = []

    def whole_photo(image, restorer):
        calls.append(restorer)
        return 255 - image, Report()

    ctx = make_context(tmp_path, whole_photo=whole_photo)
    photo = face.Face("upload", np.full((300, 400, 3), 10, np.uint8))
    state, (_, after), report, files, editor, _ = restore_tab.restore(ctx, photo, True, lambda *a, **k: None)
    assert calls == [ctx.restorer] and (after == 245).all()
    assert "whole photo: 2 faces found, 2 restored" in report and editor is None
    assert [Path(p).name for p in files] == ["upload_restored.png"]


# ---------------------------------------------------------------- compare with a fake registry

class FakeWeightsMissing(InputError):
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
                FakeInfo("masked", "Masked", needs_mask=True), FakeInfo("broken", "Broken")]

    def load(self, name, weights=None, device="cpu", restorer=None):
        if name == "gone":
            raise FakeWeightsMissing("gone: weights not found; run 'smfd baselines download gone'")
        if name == "broken":
            raise RuntimeError("no such layer")
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
    # the registry's own 'blurry' and 'smfd' entries are the app's first rows, not repeated
    assert [r[0] for r in rows] == titles
    psnr = {r[0]: r[1] for r in rows}
    assert psnr["SMFD (given: ground-truth mask)"] > psnr["blurry input"]  # 123 vs 100 against 120
    assert ctx.baselines.loaded["masked"].masks[0] is truth and ctx.baselines.loaded["sharpen"].masks == [None]
    assert "Gone-GAN**: gone: weights not found; run 'smfd baselines download gone'" in missing
    assert "Broken**: failed (RuntimeError: no such layer)" in missing
    assert note == ""


def test_compare_without_truth_or_registry(tmp_path):
    ctx = make_context(tmp_path)
    f = face.Face("x", np.full((32, 32, 3), 100, np.uint8))
    gallery, rows, missing, note = compare_tab.compare(ctx, f, progress=lambda *a, **k: None)
    assert [t for _, t in gallery] == ["blurry input", "SMFD (generated mask)"]
    assert all(r[1] is None for r in rows) and "no PSNR/SSIM" in note
    assert "SMFD (given mask)**: no given mask" in missing and "without the baselines registry" in missing
    with pytest.raises(gr.Error, match="Restore tab first"):
        compare_tab.compare(ctx, None, progress=lambda *a, **k: None)


# ---------------------------------------------------------------- feature maps (Learn)

def test_feature_maps_of_both_networks(random_weights):
    from smfd.restorer import Restorer

    restorer = Restorer.from_pretrained(random_weights, "cpu")
    image = examples.blurred(examples.astronaut_face(), 0)[0]
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
    many[0, :2] = 1  # first channel: top half bright; mean: faint but the same pattern
    first, how = features.picture(many, "first channel")
    assert how == "channel 1" and (first[0] != first[-1]).any()
    assert features.picture(many, "channel mean")[1] == "channel mean"


# ---------------------------------------------------------------- the study's trials

def fake_study(tmp_path, methods, n_images=6) -> Study:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for i in range(n_images):
        Image.fromarray(np.full((16, 16, 3), i * 10, np.uint8)).save(folder / f"p{i}.png")
    calls = []

    def restore(method, image):
        calls.append(method)
        return np.clip(image.astype(int) + len(method), 0, 255).astype(np.uint8)

    study = Study(study_photos(folder), methods, VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}"),
                  tmp_path / "cache", restore)
    study.calls = calls
    return study


def test_trials_are_blind_random_and_reproducible(tmp_path):
    study = fake_study(tmp_path, ["smfd", "gfpgan", "codeformer"])
    trials = [study.trial("alice", i) for i in range(len(study))]
    assert study.trial("alice", len(study)) is None
    assert sorted(t.image.name for t in trials) == sorted(p.name for p in study.images)  # each once
    assert all(t.left != t.right for t in trials)
    assert {frozenset((t.left, t.right)) for t in trials} == {frozenset(p) for p in study.pairs}
    assert trials == [study.trial("alice", i) for i in range(len(study))]  # a reload sees the same
    others = [study.trial(f"p{k}", 0) for k in range(40)]
    assert len({t.image for t in others}) > 1  # orders differ between participants
    lefts = [t.left for t in others if {t.left, t.right} == {"smfd", "gfpgan"}]
    assert 0 < lefts.count("smfd") < len(lefts)  # and so do the sides


def test_study_adds_the_input_as_control_and_caches_restorations(tmp_path):
    study = fake_study(tmp_path, ["smfd"], n_images=2)
    assert study.methods == ["smfd", CONTROL] and study.pairs == [("smfd", CONTROL)]
    first = study.restoration(study.images[0], "smfd")
    assert study.precompute() == 3  # the other three (photo, method) pairs
    again = study.restoration(study.images[0], "smfd")
    assert (first == again).all() and study.calls.count("smfd") == 2  # one per photo, then cached


# ---------------------------------------------------------------- vote storage

def _vote(participant: str, trial: int, side: str = "left") -> Vote:
    return Vote(participant, trial, f"photo{trial}.png", "smfd", "gfpgan", side, 1234)


def _replica(url: str, replica: int, threads: int, per_thread: int) -> None:
    """One app replica: its own engine, several participants voting at once."""
    store = VoteStore(url)

    def participant(k: int) -> None:
        for t in range(per_thread):
            store.add(_vote(f"r{replica}-p{k}", t, "left" if (t + k) % 2 else "right"))
        store.add(_vote(f"r{replica}-p{k}", 0))  # a double click: must not count twice

    workers = [threading.Thread(target=participant, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_no_vote_is_lost_with_concurrent_replicas_and_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    ctx = multiprocessing.get_context("fork")
    replicas = [ctx.Process(target=_replica, args=(url, r, 4, 15)) for r in range(3)]
    for p in replicas:
        p.start()
    for p in replicas:
        p.join(timeout=120)
        assert p.exitcode == 0
    restarted = VoteStore(url)  # a fresh process opening the same database
    rows = restarted.rows()
    assert len(rows) == 3 * 4 * 15
    assert len({(r["participant"], r["trial"]) for r in rows}) == len(rows)
    assert {r["instance"] for r in rows}.__len__() == 3  # every replica wrote
    assert restarted.next_trial("r0-p0") == 15 and restarted.next_trial("newcomer") == 0
    with restarted.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    vote = restarted.votes()[0]
    assert vote.chosen in ("smfd", "gfpgan") and vote.response_ms == 1234
    assert restarted.add(_vote("r0-p0", 3)) is False  # stored before: kept once
    with pytest.raises(ValueError, match="side"):
        restarted.add(_vote("x", 0, "middle"))
    with pytest.raises(InputError, match="not a database URL"):
        VoteStore("votes.sqlite")


def test_a_bad_study_photo_stops_the_start_with_its_name(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"not really a photo")
    with pytest.raises(InputError, match="broken.jpg: not an image file"):
        study_photos(tmp_path)


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
    assert study_stats.plot(scores).axes  # a figure with the scores


def test_csv_export_holds_every_vote(tmp_path):
    store = VoteStore(f"sqlite:///{tmp_path / 'v.sqlite'}")
    for t in range(3):
        store.add(_vote("p", t, "right"))
    path = study_stats.write_csv(store.rows(), tmp_path / "votes.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("id,participant,trial,image,left,right,chosen,side,response_ms")
    assert len(lines) == 4 and all(",gfpgan,right,1234," in line for line in lines[1:])
