"""Whole photos: detection, alignment, restoration and seamless paste-back (issue 3).

The networks are random-init (``random_weights``): these tests check the geometry and the
bookkeeping, which do not depend on trained weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from smfd import metrics
from smfd.cli import main
from smfd.faces import CROP_SIZE, TEMPLATE, apply, detect_faces, fit_template, invert, key_points, warp
from smfd.images import read_image, read_labels, write_png
from smfd.photos import MIN_FACE, FaceResult, PhotoReport, paste, paste_alpha, restore_photo
from smfd.restorer import Restorer

# The real photos and how many faces each shows (counted by eye).
REAL_PHOTOS = {"00.jpg": 2, "10045.png": 3, "Blake_Lively.jpg": 2}


@pytest.fixture(scope="module")
def restorer(random_weights) -> Restorer:
    return Restorer.from_pretrained(random_weights, "cpu")


@pytest.fixture(scope="module")
def whole(shared_data):
    return shared_data / "realworld" / "whole"


@pytest.fixture(scope="module")
def restored_real(whole, restorer) -> dict:
    """name -> (input, output, report) for every real photo; computed once for the module."""
    results = {}
    for name in REAL_PHOTOS:
        image = read_image(whole / name)
        out, report = restore_photo(image, restorer)
        results[name] = image, out, report
    return results


@pytest.fixture(scope="module")
def face_512(celeba) -> np.ndarray:
    """A real aligned 512x512 CelebA-HQ face."""
    return read_image(sorted((celeba / "images").glob("*.jpg"))[0])


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth, face-free RGB canvas."""
    canvas = np.empty((height, width, 3), np.uint8)  # built in place: cheap even at 6000x4000
    canvas[..., 0] = np.linspace(30, 230, width, dtype=np.float32).astype(np.uint8)
    canvas[..., 1] = np.linspace(30, 230, height, dtype=np.float32).astype(np.uint8)[:, None]
    canvas[..., 2] = 120
    return canvas


def place(canvas: np.ndarray, face: np.ndarray, side: int, x: int, y: int) -> np.ndarray:
    """Paste ``face`` resized to ``side`` with its top-left corner at (x, y), cut at the edges."""
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    canvas[y0:y1, x0:x1] = small[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def assert_changes_only_near(image, out, faces, reach=1.5):
    """Every changed pixel lies within ``reach`` face widths of some face centre."""
    ys, xs = np.nonzero(changed(image, out))
    if not len(xs):
        return
    pixels = np.stack([xs, ys], 1).astype(np.float64)
    nearest = np.min([np.linalg.norm(pixels - f.centre, axis=1) / f.size for f in faces], axis=0)
    assert nearest.max() <= reach, f"a pixel {nearest.max():.2f} face widths from any face changed"


def mean_change_around(image, out, face, radius=0.25) -> float:
    x, y = face.centre
    r = radius * face.size
    x0, y0, x1, y1 = int(x - r), int(y - r), int(x + r), int(y + r)
    a, b = image[y0:y1, x0:x1].astype(np.float64), out[y0:y1, x0:x1].astype(np.float64)
    return float(np.abs(a - b).mean())


# ---------------------------------------------------------------- real photos

@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_real_photo_faces_are_found_restored_and_pasted(restored_real, name):
    image, out, report = restored_real[name]
    assert len(report.faces) == REAL_PHOTOS[name], report.summary()
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len(report.restored) == REAL_PHOTOS[name]  # all of these faces are large enough
    for result in report.faces:
        face = result.face
        assert face.size >= MIN_FACE
        eye_l, eye_r, mouth_l, mouth_r = key_points(face.landmarks)
        assert max(eye_l[1], eye_r[1]) < min(mouth_l[1], mouth_r[1])  # upright: eyes above the mouth
        assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
        assert mean_change_around(image, out, face) > 1.0, "the pasted face equals the input"
    assert_changes_only_near(image, out, [r.face for r in report.faces])


def test_real_faces_are_aligned_to_the_template(restored_real):
    for image, _, report in restored_real.values():
        for result in report.faces:
            placed = apply(result.face.matrix, key_points(result.face.landmarks))
            error = np.linalg.norm(placed - TEMPLATE * CROP_SIZE, axis=1)
            assert error.max() < 0.06 * CROP_SIZE  # a few px: faces differ a little from the mean
            assert result.crop.shape == (CROP_SIZE, CROP_SIZE, 3)
            assert result.groups.shape == (CROP_SIZE, CROP_SIZE) and result.groups.max() <= 4


def test_multi_face_photo_pastes_every_face(restored_real):
    image, out, report = restored_real["10045.png"]
    regions = [r.region for r in report.restored]
    assert len(set(regions)) == 3  # three separate faces, each pasted
    centres = np.array([r.face.centre for r in report.faces])
    assert np.all(np.diff(centres[:, 0]) >= 0)  # reported left to right


def test_rotated_photo_finds_the_faces_at_their_place(restored_real):
    image, _, report = restored_real["Blake_Lively.jpg"]
    turned = np.ascontiguousarray(np.rot90(image))  # counter-clockwise: (x, y) -> (y, W - 1 - x)
    faces = detect_faces(turned)
    assert len(faces) == 2
    width = image.shape[1]
    expected = sorted((c[1], width - 1 - c[0]) for c in (r.face.centre for r in report.faces))
    for face, (ex, ey) in zip(faces, expected):
        assert np.hypot(face.centre[0] - ex, face.centre[1] - ey) < 0.1 * face.size


# ---------------------------------------------------------------- geometry

def test_alignment_round_trip_on_a_synthetic_pattern():
    y, x = np.mgrid[0:400, 0:500].astype(np.float64)
    pattern = np.dstack([128 + 100 * np.sin(x / 9) * np.cos(y / 13), 128 + 90 * np.sin((x + y) / 17),
                         128 + 80 * np.cos(x / 21)]).astype(np.uint8)
    angle, scale = np.deg2rad(25), 1.4  # photo -> crop: turned and enlarged
    known = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -150.0],
                      [scale * np.sin(angle), scale * np.cos(angle), -300.0]])
    points = apply(invert(known), TEMPLATE * CROP_SIZE)
    matrix = fit_template(points)
    np.testing.assert_allclose(matrix, known, atol=1e-6)

    crop = warp(pattern, matrix, (CROP_SIZE, CROP_SIZE))
    back = np.zeros_like(pattern)
    region = paste(back, crop, np.ones((CROP_SIZE, CROP_SIZE), np.float32), matrix)
    assert region is not None
    # Compare where the photo pixel maps well inside the crop (bilinear edges excluded).
    inside = apply(matrix, np.stack([x.ravel(), y.ravel()], 1)).reshape(400, 500, 2)
    keep = np.all((inside > 3) & (inside < CROP_SIZE - 4), axis=2)
    error = np.abs(back[keep].astype(int) - pattern[keep].astype(int))
    assert keep.sum() > 10_000 and error.mean() < 2.0 and error.max() < 25


@pytest.mark.parametrize("scale", [0.1, 0.25, 0.5, 1.0, 2.0])
def test_warp_puts_a_point_where_the_matrix_sends_it_at_every_scale(scale):
    """Shrinking before the warp (scales under 0.8) keeps pixel centres where they were: a bright
    spot lands at matrix @ spot, not half a source pixel up-left (2-5 px on a 24 MP photo's face)."""
    y, x = np.mgrid[0:1200, 0:1000].astype(np.float64)
    spot = np.array([431.0, 517.0])
    image = (255 * np.exp(-((x - spot[0]) ** 2 + (y - spot[1]) ** 2) / (2 * (12 / scale) ** 2))).astype(np.float32)
    matrix = np.array([[scale, 0, 7.3], [0, scale, -3.1]])
    out = warp(image, matrix, (round(1000 * scale) + 20, round(1200 * scale)))
    oy, ox = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    found = np.array([(ox * out).sum(), (oy * out).sum()]) / out.sum()
    np.testing.assert_allclose(found, apply(matrix, spot[None])[0], atol=0.1)  # was off by 0.5 - scale / 2


def test_a_face_larger_than_the_crop_keeps_its_finest_detail(face_512):
    """Through a restorer that gives every crop back unchanged, a 290 px face comes back with its
    own detail (44.4 dB), not its 256 px crop's scaled up (36.7 dB before)."""
    from smfd.restorer import Restoration

    class Unchanged:
        def restore_face(self, image, mask=None, *, keep_colours=True):
            return Restoration(image, np.ones(image.shape[:2], np.uint8), True)

    out, report = restore_photo(face_512, Unchanged())
    (found,) = report.faces
    x0, y0, x1, y1 = found.region
    assert found.face.size > 1.5 * 152  # the face is 152 px wide in the crop
    assert metrics.psnr(out[y0:y1, x0:x1], face_512[y0:y1, x0:x1]) > 42


def test_overlapping_large_faces_take_their_detail_from_the_photo(face_512):
    """Each face's finest detail comes from the photo, not from a face pasted before it: where the
    second face covers the first, it is as restored alone (the first's grey face was its detail)."""
    from smfd.restorer import Restoration

    class Grey:
        def restore_face(self, image, mask=None, *, keep_colours=True):
            return Restoration(np.full_like(image, 128), np.ones(image.shape[:2], np.uint8), True)

    photo = place(place(gradient(560, 320), face_512, 300, 0, 10), face_512[:, ::-1], 300, 230, 10)
    faces = sorted(detect_faces(photo, rotations=False), key=lambda f: f.landmarks[:, 0].mean())
    assert len(faces) == 2 and min(f.size for f in faces) > 152  # larger than the crop's face: detail kept
    both, _ = restore_photo(photo, Grey(), faces=faces)
    alone, report = restore_photo(photo, Grey(), faces=faces[1:])
    x0, y0, x1, y1 = report.faces[0].region
    first = restore_photo(photo, Grey(), faces=faces[:1])[1].faces[0].region
    overlap = (slice(y0, y1), slice(x0, first[2]))
    assert first[2] - x0 > 40  # the regions overlap
    second = report.faces[0]
    weight = warp(paste_alpha(second.groups), invert(second.face.matrix), (photo.shape[1], photo.shape[0]))
    covered = weight[overlap] > 0.999  # the second face alone decides these pixels: the base does not count
    assert covered.sum() > 2000
    difference = np.abs(both[overlap].astype(int) - alone[overlap].astype(int))[covered]
    assert difference.max() <= 1, difference.max()


def test_a_crop_with_a_small_second_hit_is_still_an_aligned_crop(shared_data):
    """realworld/cropped's Eliane Karp crop: a 22 px false hit beside the face made it a photo
    (its edges faded out); a second face of the main one's size still does."""
    from smfd.faces import Face, is_aligned_crop

    image = read_image(shared_data / "realworld" / "cropped" / "Eliane_Karp_0001_00_lq.png")
    faces = detect_faces(image)
    assert len(faces) == 2 and is_aligned_crop(image, faces)
    main = max(faces, key=lambda f: f.size)
    assert not is_aligned_crop(image, [main, Face(main.landmarks + 40, 1.0)])


def test_paste_with_zero_alpha_changes_nothing_and_alpha_fades_at_the_border():
    photo = gradient(300, 200)
    matrix = fit_template(np.array([[120, 90], [170, 90], [125, 140], [165, 140]], np.float64))
    out = photo.copy()
    paste(out, np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8), np.zeros((CROP_SIZE, CROP_SIZE), np.float32), matrix)
    assert np.array_equal(out, photo)

    alpha = paste_alpha(np.ones((CROP_SIZE, CROP_SIZE), np.uint8))
    assert alpha[0].max() == 0 and alpha[:, -1].max() == 0  # the crop's box never shows
    assert alpha[CROP_SIZE // 2, CROP_SIZE // 2] > 0.99
    assert paste_alpha(np.zeros((CROP_SIZE, CROP_SIZE), np.uint8)).max() == 0  # background: no paste


# ---------------------------------------------------------------- edge cases

def test_face_at_the_border(restorer, face_512):
    photo = place(gradient(640, 480), face_512, 220, -50, 100)  # its left side is cut off
    out, report = restore_photo(photo, restorer)
    assert len(report.restored) == 1
    face = report.faces[0].face
    assert face.centre[0] - face.size / 2 < 0  # the face passes the photo's edge
    assert out.shape == photo.shape
    assert mean_change_around(photo, out, face) > 1.0
    assert changed(photo, out)[:, :3].any()  # restored right up to the edge
    assert_changes_only_near(photo, out, [face])


def test_tiny_face_is_left_untouched_and_reported(restorer, face_512):
    photo = place(gradient(640, 480), face_512, 45, 300, 200)  # a ~26 px wide face
    out, report = restore_photo(photo, restorer)
    assert len(report.faces) == 1 and len(report.too_small) == 1
    assert report.faces[0].face.size < MIN_FACE
    assert np.array_equal(out, photo)
    assert "1 left untouched (smaller than 32 px" in report.summary()
    # a width just under the limit is not rounded up to it ("smaller than 32 px: 32 px")
    near = PhotoReport([FaceResult(SimpleNamespace(size=31.6, centre=np.array([10.0, 20.0])), restored=False)], 32)
    assert near.summary().endswith("(smaller than 32 px: 31 px at (10, 20))")


def test_a_photo_whose_every_face_is_too_small_is_named_and_not_written(tmp_path, random_weights, face_512, capsys,
                                                                        monkeypatch):
    """Before the networks load."""
    monkeypatch.setattr("smfd.restorer.load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
    src = write_png(tmp_path / "small.png", place(gradient(640, 480), face_512, 45, 300, 200))
    out = tmp_path / "out"
    assert main(["restore", str(src), str(out), "--weights", str(random_weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{src}: 1 face found, 0 restored, 1 left untouched" in err, err
    assert "nothing written (--min-face" in err and not (out / "small.png").exists()


def test_a_photo_without_a_face_is_named_and_nothing_is_written_for_it(tmp_path, random_weights, face_512,
                                                                       capsys, monkeypatch):
    """Alone: one line naming it with a hint, exit status 2, no output, before the networks load.
    In a folder: named, the other photos restored, exit status 1; a copy of the photo is never
    written as its result."""
    sky = write_png(tmp_path / "in" / "sky.png", gradient(320, 240))
    square = write_png(tmp_path / "square" / "grey.png", gradient(256, 256))
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr("smfd.restorer.load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
        for src, hint in ((sky, "--detector cnn"), (square, "--aligned restores it whole"),
                          (sky.parent, "--detector cnn")):
            assert main(["restore", str(src), str(out), "--weights", str(random_weights)]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith(
                f"smfd: error: {sky if src == sky.parent else src}: no face found, nothing written ("), err
            assert hint in err, err
            assert not out.exists()
    write_png(tmp_path / "in" / "portrait.png", place(gradient(640, 480), face_512, 200, 220, 120))
    assert main(["restore", str(tmp_path / "in"), str(out), "--weights", str(random_weights)]) == 1
    captured = capsys.readouterr()
    assert f"{sky}: no face found" in captured.err and "portrait.png: 1 face found, 1 restored" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["portrait.png"]


def test_folder_with_bad_files_and_faces_out(tmp_path, random_weights, face_512, capsys, monkeypatch):
    photos = tmp_path / "photos"
    write_png(photos / "good.png", place(gradient(640, 480), face_512, 200, 220, 120))
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (photos / "notes.jpg").write_text("not a photo")
    out, crops = tmp_path / "out", tmp_path / "crops"
    rc = main(["restore", str(photos), str(out), "--weights", str(random_weights), "--faces-out", str(crops)])
    captured = capsys.readouterr()
    assert rc == 1  # some inputs failed, the others were written
    errors = [line for line in captured.err.splitlines() if line.startswith("smfd: error:")]
    for bad in ("empty.jpg", "broken.png", "notes.jpg"):
        assert sum(bad in line for line in errors) == 1, captured.err
    assert "good.png: 1 face found, 1 restored" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    assert read_image(out / "good.png").shape == (480, 640, 3)
    names = sorted(p.name for p in crops.iterdir())
    assert names == [f"good_face1_{k}.png" for k in ("blurry", "mask", "mask_colour", "restored")]
    labels = read_labels(crops / "good_face1_mask.png")
    assert labels.shape == (CROP_SIZE, CROP_SIZE) and labels.max() <= 4
    assert read_image(crops / "good_face1_restored.png").shape == (CROP_SIZE, CROP_SIZE, 3)
    # Again into the same --faces-out (an earlier run left a second face's crops there too): refused
    # before the networks load; with --overwrite this photo's crops are its new ones only.
    for kind in ("blurry", "restored"):
        write_png(crops / f"good_face2_{kind}.png", np.zeros((8, 8, 3), np.uint8))
    write_png(crops / "goodbye_face1_blurry.png", np.zeros((8, 8, 3), np.uint8))  # another photo's
    before = {p.name: p.read_bytes() for p in crops.iterdir()}
    again = ["restore", str(photos / "good.png"), str(tmp_path / "out2"), "--weights", str(random_weights),
             "--faces-out", str(crops)]
    with monkeypatch.context() as m:
        m.setattr("smfd.restorer.load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
        assert main(again) == 2  # the only input: one line
    captured = capsys.readouterr()
    assert f"{crops / 'good_face1_blurry.png'}: exists already" in captured.err and "face found" not in captured.out
    assert {p.name: p.read_bytes() for p in crops.iterdir()} == before and not (tmp_path / "out2" / "good.png").exists()
    assert main(again + ["--overwrite"]) == 0
    assert sorted(p.name for p in crops.iterdir()) == sorted(names + ["goodbye_face1_blurry.png"])
    # --faces-out the folder of the inputs, one of which has a crop's name: refused before the
    # networks load, even with --overwrite, and that input is left as it was
    victim = photos / "good_face1_blurry.png"
    write_png(victim, place(gradient(640, 480), face_512, 200, 220, 120))
    kept = victim.read_bytes()
    capsys.readouterr()
    monkeypatch.setattr("smfd.restorer.load_networks", lambda *a, **k: pytest.fail("the networks were loaded"))
    assert main(["restore", str(photos), str(tmp_path / "out3"), "--weights", str(random_weights),
                 "--faces-out", str(photos), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (f"smfd: error: {victim}: an input of this run, which its face "
                                               "crops would replace (choose another --faces-out folder)")
    assert victim.read_bytes() == kept and not (tmp_path / "out3").exists()
    # --faces-out OUT itself: the output of good_face1_blurry.png would be a crop of good.png
    assert main(["restore", str(photos), str(tmp_path / "out4"), "--weights", str(random_weights),
                 "--faces-out", str(tmp_path / "out4"), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"smfd: error: {tmp_path / 'out4' / 'good_face1_blurry.png'}: would be both the output of "
        "good_face1_blurry.png and a face crop of good (choose another --faces-out folder)")


def test_a_restored_photo_keeps_its_transparency_grey_depth_and_colour_profile(tmp_path, random_weights, face_512):
    """What the restorer cannot see stays as it was: the alpha channel, a 16-bit grey photo's
    values away from the face (and its one channel), the ICC profile and the resolution."""
    from PIL import Image, ImageCms

    photo = place(gradient(480, 360), face_512, 200, 140, 80)
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    folder = tmp_path / "in"
    folder.mkdir()
    alpha = np.tile(np.linspace(0, 255, 480).astype(np.uint8), (360, 1))
    Image.fromarray(np.dstack([photo, alpha])).save(folder / "clear.png", icc_profile=icc, dpi=(300, 300))
    deep = grey.astype(np.uint16) * 257 + np.tile(np.arange(480, dtype=np.uint16) % 200, (360, 1))
    Image.fromarray(deep).save(folder / "deep.png")  # uint16: mode I;16
    assert main(["restore", str(folder), str(tmp_path / "out"), "--weights", str(random_weights)]) == 0
    clear = Image.open(tmp_path / "out" / "clear.png")
    assert clear.mode == "RGBA" and clear.info["icc_profile"] == icc and round(clear.info["dpi"][0]) == 300
    assert np.array_equal(np.asarray(clear)[..., 3], alpha)
    restored = np.asarray(Image.open(tmp_path / "out" / "deep.png"))
    face = np.rint(deep / 257) != np.rint(restored / 257)  # where the 8-bit values changed
    assert restored.dtype == np.uint16 and 0.05 < face.mean() < 0.5
    assert np.array_equal(restored[~face], deep[~face])  # the 16-bit values, not their 8-bit rounding


def test_a_16_bit_colour_photo_keeps_its_values_away_from_the_face(tmp_path, random_weights, face_512, capfd):
    """A 16-bit colour TIFF (a scan, a raw development) is written as a 16-bit PNG: its values away
    from the face, its alpha channel, profile and resolution as they were, the face's pixels its
    restoration's; one turned by its EXIF orientation is read upright, at 8 bits."""
    import tifffile
    from PIL import Image, ImageCms

    photo = place(gradient(480, 360), face_512, 200, 140, 80)
    fine = np.tile(np.arange(480, dtype=np.uint16) % 200, (360, 1))[..., None]  # below one 8-bit level
    deep = np.dstack([photo.astype(np.uint16) * 257 + fine, np.full((360, 480), 40000, np.uint16)])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "scan.tif", deep, photometric="rgb", extrasamples=["unassalpha"], compression="zlib",
                     iccprofile=icc, resolution=(300, 300), resolutionunit="INCH")
    assert np.array_equal(read_image(folder / "scan.tif"), np.rint(deep[..., :3] / 257))
    assert main(["restore", str(folder), str(tmp_path / "out"), "--weights", str(random_weights)]) == 0
    written = Image.open(tmp_path / "out" / "scan.png")
    assert written.mode == "RGBA" and written.info["icc_profile"] == icc and round(written.info["dpi"][0]) == 300
    restored = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "scan.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    face = (np.rint(deep / 257) != np.rint(restored / 257))[..., :3].any(-1)  # where the 8-bit values changed
    assert restored.dtype == np.uint16 and 0.05 < face.mean() < 0.5
    assert np.array_equal(restored[~face], deep[~face]) and (restored[..., 3] == 40000).all()
    # Read at 8 bits, as Pillow reads them (the top byte), where OpenCV cannot read the 16: a TIFF
    # turned by its EXIF orientation, one of planes compressed apart (OpenCV scrambles them)
    tifffile.imwrite(tmp_path / "turned.tif", np.rot90(deep[..., :3]), photometric="rgb",
                     extratags=[(0x0112, "H", 1, 6, True)])  # stored turned a quarter to the left
    tifffile.imwrite(tmp_path / "planes.tif", np.moveaxis(deep[..., :3], -1, 0), photometric="rgb",
                     planarconfig="separate", compression="zlib")
    odd = tmp_path / os.fsdecode(b"caf\xe9.tif")  # a name that is not UTF-8 (OpenCV's imread crashed)
    tifffile.imwrite(odd, deep[..., :3], photometric="rgb", extratags=[(50341, "B", 4, b"abcd", True)])
    capfd.readouterr()
    for name in ("turned.tif", "planes.tif"):
        assert np.array_equal(read_image(tmp_path / name), deep[..., :3] >> 8), name
    assert np.array_equal(read_image(odd), np.rint(deep[..., :3] / 257))
    assert capfd.readouterr().err == ""  # nor OpenCV's warning about the tag libtiff does not know (PrintIM)


def test_writing_like_the_source_keeps_only_what_fits_the_pixels(tmp_path):
    """A 16-bit grey PNG with a transparent value has no 16-bit form with alpha: 8 bits, not white;
    a CMYK JPEG's profile does not describe the RGB pixels written: left out."""
    from PIL import Image, ImageCms

    from smfd.images import write_like

    deep = np.random.default_rng(0).integers(0, 65535, (20, 30)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png", transparency=1000)
    write_like(tmp_path / "deep_out.png", read_image(tmp_path / "deep.png"), tmp_path / "deep.png")
    out = Image.open(tmp_path / "deep_out.png")
    assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 0], np.rint(deep / 257).astype(np.uint8))
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[16:20] = b"CMYK"  # the header's colour space
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(tmp_path / "c.jpg", icc_profile=bytes(profile))
    write_like(tmp_path / "c.png", read_image(tmp_path / "c.jpg"), tmp_path / "c.jpg")
    assert "icc_profile" not in Image.open(tmp_path / "c.png").info


def test_a_damaged_exif_block_prints_no_warning(tmp_path):
    """A JPEG whose EXIF block is cut short loses its orientation, nothing else: no warning lines
    from Pillow's tag reader when it is read, nor when its restoration is written like it."""
    import warnings

    from PIL import Image

    from smfd.images import write_like

    exif = Image.Exif()
    exif[0x0112], exif[0x010E] = 6, "a description long enough to be stored after the tags"
    Image.new("RGB", (60, 40), (10, 20, 30)).save(tmp_path / "cut.jpg", exif=exif.tobytes()[:-30])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "cut.jpg")
        write_like(tmp_path / "out.png", image, tmp_path / "cut.jpg")
    assert image.shape == (40, 60, 3) and read_image(tmp_path / "out.png").shape == (40, 60, 3)


def test_a_tag_of_the_wrong_type_keeps_the_orientation_and_a_huge_resolution_is_dropped(tmp_path):
    """A phone JPEG (orientation 6) whose EXIF holds a tag typed otherwise than the standard says is
    read turned upright (Pillow's exif_transpose failed on it: the run stopped with "required
    argument is not an integer"); a resolution PNG cannot store is left out of the written file,
    which failed after the restoration."""
    from PIL import Image

    from smfd.images import write_like

    exif = Image.Exif()
    exif[0x0112], exif[0x0131] = 6, "sw"
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :20] = 255  # white on the left: on top once turned upright
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    data = (tmp_path / "phone.jpg").read_bytes()  # the Software tag's id becomes StripByteCounts', still ASCII
    (tmp_path / "phone.jpg").write_bytes(data.replace(b"\x01\x31\x00\x02", b"\x01\x17\x00\x02", 1))
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (60, 40, 3) and image[:15].min() > 200 and image[-15:].max() < 50
    Image.fromarray(pixels).save(tmp_path / "dpi.jpg", dpi=(4294967295, 4294967295))
    written = write_like(tmp_path / "dpi.png", read_image(tmp_path / "dpi.jpg"), tmp_path / "dpi.jpg")
    assert "dpi" not in Image.open(written).info and (read_image(written) == read_image(tmp_path / "dpi.jpg")).all()


def test_aligned_option_and_masks_imply_it(tmp_path, random_weights, face_512, capsys):
    src = write_png(tmp_path / "crop.png", face_512)
    rc = main(["restore", str(src), str(tmp_path / "out"), "--weights", str(random_weights), "--aligned"])
    assert rc == 0 and read_image(tmp_path / "out" / "crop.png").shape == (512, 512, 3)
    assert "face found" not in capsys.readouterr().out  # no detection on aligned crops
    # all background: not what the (random) generator gives, so the output shows the mask was read
    write_png(tmp_path / "masks" / "crop.png", np.zeros((512, 512), np.uint8))
    weights = ["--weights", str(random_weights), "--masks", str(tmp_path / "masks")]
    assert main(["restore", str(src), str(tmp_path / "out2"), *weights]) == 0  # SPEC: IN OUT --masks DIR
    assert main(["restore", str(src), str(tmp_path / "out3"), *weights, "--aligned"]) == 0
    assert "face found" not in capsys.readouterr().out
    assert np.array_equal(read_image(tmp_path / "out2" / "crop.png"),
                          read_image(tmp_path / "out3" / "crop.png"))
    assert not np.array_equal(read_image(tmp_path / "out" / "crop.png"), read_image(tmp_path / "out2" / "crop.png"))
    rc = main(["restore", str(src), str(tmp_path / "out4"), *weights, "--faces-out", str(tmp_path / "f")])
    assert rc == 2 and "does not go with --aligned or --masks" in capsys.readouterr().err


# VmHWM (peak resident memory) of this process alone; ru_maxrss would include the parent's peak
# at fork time.
LARGE_RUN = """
import re, sys
from pathlib import Path
from smfd.cli import main
rc = main(sys.argv[1:])
print("peak-rss-mb", int(re.search(r"VmHWM:\\s*(\\d+)", Path("/proc/self/status").read_text())[1]) // 1024)
sys.exit(rc)
"""


def test_large_photo_is_processed_in_bounded_memory(tmp_path, random_weights, face_512):
    photo = place(gradient(6000, 4000), face_512, 700, 2500, 1500)
    src = tmp_path / "large.jpg"
    cv2.imwrite(str(src), photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    del photo
    run = subprocess.run([sys.executable, "-c", LARGE_RUN, "restore", str(src), str(tmp_path / "out"),
                          "--weights", str(random_weights)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "large.jpg: 1 face found, 1 restored" in run.stdout
    peak = int(run.stdout.split("peak-rss-mb")[1])
    # ~650 MB are torch and the networks, ~300 MB reading the 72 MB photo; no full-size blow-up.
    assert peak < 1600, f"peak memory {peak} MB"
    image, out = read_image(src), read_image(tmp_path / "out" / "large.png")
    assert out.shape == image.shape == (4000, 6000, 3)
    ys, xs = np.nonzero(changed(image, out))
    assert len(xs) > 0
    assert xs.min() >= 2500 - 350 and xs.max() < 3200 + 350  # within half a face square of the face
    assert ys.min() >= 1500 - 350 and ys.max() < 2200 + 350


@pytest.mark.parametrize("shape", [(9000, 9), (100, 20000), (600, 800)])
def test_every_searched_copy_keeps_the_pixel_budget(shape, monkeypatch):
    """A long thin photo turned by 45 degrees lies on a canvas of about (w + h)^2 / 2 pixels: that
    canvas stays within twice the budget (as an ordinary photo's does), or a 243 KB strip takes
    gigabytes."""
    from smfd import faces

    seen = []
    monkeypatch.setattr(faces, "find_boxes", lambda view, detector="hog": seen.append(view.shape) or [])
    photo = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    assert detect_faces(photo) == []
    assert len(seen) == 1 + sum(len(angles) for angles in faces.ROTATIONS)  # upright, then every turn
    budgets = [faces.DETECT_PIXELS["hog"]] + [faces.ROTATED_PIXELS] * (len(seen) - 1)
    for (h, w, _), budget in zip(seen, budgets):
        assert h * w <= 2.02 * budget + 2 * (h + w), (h, w)  # rounding up adds at most a row and a column
    if shape == (600, 800):  # an ordinary photo is searched at the scale its own pixels allow
        assert seen[0][:2] == (round(600 * 4.0), round(800 * 4.0))  # upright: enlarged 4x (MAX_UPSCALE)
        assert seen[-1][0] * seen[-1][1] > 1.9 * faces.ROTATED_PIXELS  # at -135 degrees, the full scale
