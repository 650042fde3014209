"""The degradation pipeline (thesis 3.4.1) on real faces: options, recipes, kernels, PSF, counting."""

from __future__ import annotations

import itertools
import json
import math

import cv2
import numpy as np
import pytest

from smfd import degrade
from smfd.degrade import BlurOp, PipelineOptions, Recipe
from smfd.images import read_image

SMALL = dict(layers=(1,), sequences=("M",), motion_sizes=(15,), directions=("horizontal",))


@pytest.fixture(scope="module")
def face(celeba) -> np.ndarray:
    return read_image(sorted((celeba / "images").glob("*.jpg"))[0])


@pytest.fixture(scope="module")
def small_face(face) -> np.ndarray:
    """A real face at 128x128, enough for the pixel-level checks and four times faster."""
    return cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- options

def test_defaults_are_the_thesis_values():
    o = PipelineOptions()
    assert o.layers == (1, 2, 3)
    assert o.sequences == ("M", "G>M", "M>G", "G>M>G")
    assert o.gaussian_sizes == o.motion_sizes == (15, 21, 25, 31, 35, 41)
    assert o.directions == ("horizontal", "vertical", "diagonal", "anti-diagonal")
    assert o.scale_range == (2.0, 4.0) and o.noise_range == (5.0, 10.0)
    assert o.blur and o.rescale and o.noise and o.count_step == 0.1


@pytest.mark.parametrize("bad, message", [
    (dict(layers=()), "layers"),
    (dict(layers=(0, 1)), "layers"),
    (dict(layers=(1.5,)), "layers must be integers"),
    (dict(layers=(True,)), "layers must be integers"),
    (dict(layers=(1, 1)), "must not repeat"),
    (dict(sequences=()), "sequences"),
    (dict(sequences=("G",)), "sequences"),
    (dict(sequences=("M", "M")), "must not repeat"),
    (dict(gaussian_sizes=()), "Gaussian kernel size"),
    (dict(gaussian_sizes=(14,)), "gaussian_sizes must be odd"),
    (dict(gaussian_sizes=(-15,)), "gaussian_sizes must be odd"),
    (dict(gaussian_sizes=(15.0,)), "gaussian_sizes must be integers"),
    (dict(gaussian_sizes=(15, 15)), "must not repeat"),
    (dict(motion_sizes=()), "motion sizes"),
    (dict(motion_sizes=(16,)), "motion_sizes must be odd"),
    (dict(directions=()), "directions"),
    (dict(directions=("sideways",)), "directions must be among"),
    (dict(directions=("vertical", "vertical")), "must not repeat"),
    (dict(scale_range=(0.5, 2.0)), "scale_range"),
    (dict(scale_range=(3.0, 2.0)), "scale_range"),
    (dict(scale_range=(2.0, math.inf)), "scale_range"),
    (dict(scale_range=(math.nan, 2.0)), "scale_range"),
    (dict(scale_range=(2.0, 3.0, 4.0)), "scale_range"),
    (dict(noise_range=(-1.0, 5.0)), "noise_range"),
    (dict(noise_range=(10.0, 5.0)), "noise_range"),
    (dict(noise_range=(5.0,)), "noise_range"),
    (dict(count_step=0), "count_step"),
    (dict(count_step=-0.1), "count_step"),
    (dict(count_step=math.nan), "count_step"),
    (dict(blur="false"), "blur must be true or false"),  # a string would switch the stage on
    (dict(noise=1), "noise must be true or false"),
])
def test_invalid_options_are_refused(bad, message):
    with pytest.raises(ValueError, match="invalid pipeline option") as err:
        PipelineOptions(**bad)
    assert message in str(err.value)


def test_a_switched_off_stage_skips_its_checks_and_motion_only_needs_no_gaussian():
    """Options that would be refused for a stage that runs are accepted when it is off, and the
    stage is then never drawn."""
    rng = np.random.default_rng(0)
    no_blur = PipelineOptions(blur=False, layers=(), sequences=(), motion_sizes=())
    no_scale = PipelineOptions(rescale=False, scale_range=(0.5, 0.1))
    no_noise = PipelineOptions(noise=False, noise_range=(-3.0, -5.0))
    motion_only = PipelineOptions(sequences=("M",), gaussian_sizes=())
    for _ in range(20):
        assert degrade.sample_recipe(rng, no_blur).layers == ()
        assert degrade.sample_recipe(rng, no_scale).scale is None
        assert degrade.sample_recipe(rng, no_noise).noise_sigma is None
        recipe = degrade.sample_recipe(rng, motion_only)
        assert recipe.layers and all(op.kind == "motion" for layer in recipe.layers for op in layer)


def test_options_survive_json_and_lists_become_tuples():
    o = PipelineOptions(layers=[2], sequences=["M>G"], gaussian_sizes=[21], directions=["vertical"],
                        scale_range=[2.5, 3.0], noise=False)
    back = PipelineOptions.from_dict(json.loads(json.dumps(o.to_dict())))
    assert back == o and isinstance(back.layers, tuple) and hash(back) == hash(o)
    with pytest.raises(ValueError, match="unknown kernel"):
        PipelineOptions.from_dict({**o.to_dict(), "kernel": 3})


def test_options_typed_in_another_order_draw_the_same_images():
    """The draws pick from the sets by position: the sets are kept in one order (the app ticks
    boxes in any order, the command line takes them as typed)."""
    typed = dict(layers=[1, 2], sequences=["G>M", "M"], gaussian_sizes=[15, 41], motion_sizes=[35, 21],
                 directions=["horizontal", "vertical"])
    other = {k: list(reversed(v)) for k, v in typed.items()}
    assert PipelineOptions(**typed) == PipelineOptions(**other)
    assert {degrade.sample_recipe(np.random.default_rng(5), PipelineOptions(**o)) for o in (typed, other)} == \
        {degrade.sample_recipe(np.random.default_rng(5), PipelineOptions(**typed))}
    assert PipelineOptions() == PipelineOptions(**{k: list(reversed(getattr(PipelineOptions(), k))) for k in typed})
    with pytest.raises(ValueError, match=r"sequences must be among .* got \['M', 'G-M'\]"):
        PipelineOptions(sequences=["G-M", "M"])  # an unknown name still named


# ---------------------------------------------------------------- recipes

def test_recipes_from_the_same_seed_are_equal_and_other_seeds_differ():
    a = [degrade.sample_recipe(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    others = {degrade.sample_recipe(np.random.default_rng(s)) for s in range(8)}
    assert len(others) == 8


def test_sampled_values_respect_the_options():
    o = PipelineOptions(layers=(2, 3), sequences=("G>M>G",), gaussian_sizes=(21, 25), motion_sizes=(35,),
                        directions=("diagonal", "vertical"), scale_range=(2.5, 3.0), noise_range=(6.0, 6.5))
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = degrade.sample_recipe(rng, o)
        assert len(r.layers) in (2, 3)
        for layer in r.layers:
            assert [op.kind for op in layer] == ["gaussian", "motion", "gaussian"]
            assert layer[0].size in (21, 25) and layer[2].size in (21, 25)
            assert layer[1].size == 35 and layer[1].direction in ("diagonal", "vertical")
        assert 2.5 <= r.scale <= 3.0 and 6.0 <= r.noise_sigma <= 6.5
        assert isinstance(r.noise_seed, int) and r.noise_seed >= 0


def test_saved_recipe_replays_to_identical_pixels_noise_included(face, tmp_path):
    blurry, recipe = degrade.degrade(face, np.random.default_rng(2024))
    assert recipe.layers and recipe.scale is not None and recipe.noise_sigma is not None
    path = tmp_path / "recipe.json"
    recipe.save(path)
    loaded = Recipe.load(path)
    assert loaded == recipe
    np.testing.assert_array_equal(degrade.apply(face, loaded), blurry)
    # The noise really comes from the recipe's own seed: another seed changes the pixels.
    other = Recipe(recipe.layers, recipe.scale, recipe.noise_sigma, recipe.noise_seed + 1)
    assert not np.array_equal(degrade.apply(face, other), blurry)


def test_recipe_json_is_plain_and_describable():
    r = Recipe(((BlurOp("gaussian", 21), BlurOp("motion", 35, "diagonal")), (BlurOp("motion", 15, "vertical"),)),
               2.7, 6.3, 5)
    data = json.loads(r.to_json())
    assert data == {"version": 1, "scale": 2.7, "noise_sigma": 6.3, "noise_seed": 5, "jpeg_quality": None, "layers": [
        [{"kind": "gaussian", "size": 21, "direction": None},
         {"kind": "motion", "size": 35, "direction": "diagonal"}],
        [{"kind": "motion", "size": 15, "direction": "vertical"}]]}
    assert r.describe() == "G21>M35/diagonal | M15/vertical, x2.70, noise 6.30"
    assert Recipe().describe() == "no blur, no rescale, no noise"
    assert Recipe(jpeg_quality=40).describe() == "no blur, no rescale, no noise, JPEG q40"


GOOD = {"version": 1, "layers": [[{"kind": "motion", "size": 15, "direction": "vertical"}]],
        "scale": 2.0, "noise_sigma": 5.0, "noise_seed": 1}


M15 = {"kind": "motion", "size": 15, "direction": "vertical"}


@pytest.mark.parametrize("change,named", [
    ({"version": 2}, "version"), ({"layers": [[{"kind": "box", "size": 15}]]}, "blur operation"),
    ({"layers": [[{"kind": "gaussian", "size": 14}]]}, "blur operation"),
    ({"layers": [[{"kind": "gaussian", "size": 15.0}]]}, "blur operation"),
    ({"layers": [[{"kind": "motion", "size": 15}]]}, "direction"),
    ({"layers": [[{"kind": "motion", "size": 15, "angle": 3}]]}, "lists of"), ({"layers": 3}, "lists of"),
    ({"layers": [[M15]] * 11}, "at most 10 layers of blur, got 11$"),
    ({"layers": [[M15]] * 1000}, "at most 10 layers of blur, got 1000$"),  # one short line, not 1000 counts
    ({"layers": [[M15], [M15] * 4]}, "1 to 3 blur operations, layer 1 has 4$"),
    ({"layers": [[]]}, "1 to 3 blur operations"),
    ({"scale": 0.5}, "scale"), ({"scale": "2"}, "scale"), ({"scale": 100.0}, "scale"),
    ({"noise_sigma": -1.0}, "noise_sigma"), ({"noise_sigma": 1e6}, "noise_sigma"),
    ({"noise_seed": -1}, "noise_seed"), ({"noise_seed": 1.5}, "noise_seed"), ({"noise_seed": None}, "both"),
])
def test_malformed_recipes_are_refused(change, named):
    Recipe.from_dict(GOOD)
    with pytest.raises(ValueError, match=named):
        Recipe.from_dict({**GOOD, **change})


def test_recipe_missing_fields_or_not_an_object_is_refused():
    with pytest.raises(ValueError, match="lacks noise_seed"):
        Recipe.from_dict({k: v for k, v in GOOD.items() if k != "noise_seed"})
    with pytest.raises(ValueError, match="JSON object"):
        Recipe.from_json("[1, 2]")


# ---------------------------------------------------------------- stages

def test_stage_switches_leave_their_stage_out(small_face):
    rng = np.random.default_rng(1)
    r = degrade.sample_recipe(rng, PipelineOptions(blur=False))
    assert r.layers == () and r.scale is not None and r.noise_sigma is not None
    r = degrade.sample_recipe(rng, PipelineOptions(rescale=False))
    assert r.layers and r.scale is None
    r = degrade.sample_recipe(rng, PipelineOptions(noise=False))
    assert r.noise_sigma is None and r.noise_seed is None
    off = PipelineOptions(blur=False, rescale=False, noise=False)
    out, r = degrade.degrade(small_face, rng, off)
    assert r == Recipe()
    np.testing.assert_array_equal(out, small_face)


def test_noise_stage_adds_zero_mean_noise_of_the_recipe_sigma(small_face):
    out = degrade.apply(small_face, Recipe(noise_sigma=8.0, noise_seed=3))
    unclipped = (small_face > 40) & (small_face < 215)
    diff = out.astype(float)[unclipped] - small_face[unclipped]
    assert abs(diff.mean()) < 0.3
    assert diff.std() == pytest.approx(8.0, rel=0.05)


def test_rescale_stage_keeps_size_and_removes_detail(small_face):
    assert np.array_equal(degrade.apply(small_face, Recipe(scale=1.0)), small_face)
    detail = [np.abs(np.diff(degrade.apply(small_face, Recipe(scale=s)).astype(float), axis=1)).mean()
              for s in (1.0, 2.0, 4.0)]
    assert detail[0] > detail[1] > detail[2]
    assert degrade.apply(small_face, Recipe(scale=3.3)).shape == small_face.shape


def test_apply_checks_its_input_and_keeps_grayscale_and_tiny_shapes(small_face):
    r = degrade.sample_recipe(np.random.default_rng(5))
    with pytest.raises(ValueError, match="uint8"):
        degrade.apply(small_face.astype(np.float32), r)
    with pytest.raises(ValueError, match="uint8"):
        degrade.apply(small_face[None], r)
    gray = cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY)
    assert degrade.apply(gray, r).shape == gray.shape
    assert degrade.apply(small_face[:3, :5], r).shape == (3, 5, 3)
    unscaled = degrade.sample_recipe(np.random.default_rng(5), degrade.PipelineOptions(rescale=False))
    assert degrade.apply(gray[..., None], unscaled).shape == gray.shape + (1,)  # blur alone kept the axis too
    compressed = degrade.Recipe(jpeg_quality=50)
    for channels in (2, 4):
        with pytest.raises(ValueError, match=f"JPEG needs a grey or RGB image .* got {channels} channels"):
            degrade.apply(np.zeros((8, 8, channels), np.uint8), compressed)


# ---------------------------------------------------------------- kernels and PSF

@pytest.mark.parametrize("size", degrade.THESIS_KERNEL_SIZES)
def test_gaussian_kernel_follows_the_opencv_sigma_rule(size):
    sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8
    assert degrade.gaussian_sigma(size) == pytest.approx(sigma)
    x = np.arange(size) - size // 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    expected = np.outer(g, g) / np.outer(g, g).sum()
    k = degrade.gaussian_kernel(size)
    np.testing.assert_allclose(k, expected, atol=1e-12)
    # What cv2.GaussianBlur(ksize=(size, size), sigmaX=0) uses.
    cv = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F)
    np.testing.assert_allclose(k, cv @ cv.T, atol=1e-9)


@pytest.mark.parametrize("size", [15, 41])
def test_motion_kernels_are_normalised_lines_through_the_centre(size):
    c, i = size // 2, np.arange(size)
    expected = {"horizontal": (np.full(size, c), i), "vertical": (i, np.full(size, c)),
                "diagonal": (i, i), "anti-diagonal": (i, size - 1 - i)}
    for direction, (rows, cols) in expected.items():
        k = degrade.motion_kernel(size, direction)
        assert k.shape == (size, size) and k.sum() == pytest.approx(1.0)
        line = np.zeros_like(k)
        line[rows, cols] = 1 / size
        np.testing.assert_allclose(k, line)
    with pytest.raises(ValueError, match="direction"):
        degrade.motion_kernel(size, "sideways")


def test_effective_psf_of_simple_recipes():
    np.testing.assert_array_equal(degrade.effective_psf(Recipe()), [[1.0]])
    one = Recipe(((BlurOp("motion", 21, "anti-diagonal"),),))
    np.testing.assert_allclose(degrade.effective_psf(one), degrade.motion_kernel(21, "anti-diagonal"))
    r = Recipe(((BlurOp("gaussian", 15), BlurOp("motion", 21, "diagonal")), (BlurOp("motion", 25, "horizontal"),)))
    psf = degrade.effective_psf(r)
    assert psf.shape == (15 + 21 + 25 - 2,) * 2
    assert psf.sum() == pytest.approx(1.0) and psf.min() >= 0
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-15)  # every kernel is point-symmetric


def _blur_only(seed: int) -> Recipe:
    options = PipelineOptions(layers=(2,), rescale=False, noise=False)
    r = degrade.sample_recipe(np.random.default_rng(seed), options)
    assert len(r.layers) == 2
    return r


@pytest.mark.parametrize("seed", [0, 1])
def test_effective_psf_is_the_blur_of_an_impulse(seed):
    recipe = _blur_only(seed)
    psf = degrade.effective_psf(recipe)
    n = 2 * psf.shape[0] + 1  # the impulse is far enough from every border
    impulse = np.zeros((n, n), np.uint8)
    impulse[n // 2, n // 2] = 255
    out = degrade.apply(impulse, recipe).astype(np.float64)
    r = psf.shape[0] // 2
    window = out[n // 2 - r:n // 2 + r + 1, n // 2 - r:n // 2 + r + 1]
    np.testing.assert_allclose(window, 255 * psf, atol=0.5 + 1e-3)  # apply rounds to uint8
    assert out.sum() == pytest.approx(window.sum())  # nothing spreads beyond the PSF


def test_effective_psf_matches_the_blur_of_a_real_face(small_face):
    recipe = Recipe(((BlurOp("gaussian", 15), BlurOp("motion", 21, "diagonal")),))
    psf = degrade.effective_psf(recipe)
    expected = cv2.filter2D(small_face.astype(np.float64), -1, psf)
    r = psf.shape[0] // 2
    inner = np.s_[r:-r, r:-r]
    diff = np.abs(degrade.apply(small_face, recipe)[inner] - expected[inner])
    assert diff.max() <= 0.5 + 1e-3


# ---------------------------------------------------------------- counting

def _grid(lo: float, hi: float, step: float) -> set[float]:
    """The values lo, lo + step, ... that do not pass hi (walking the grid, no closed formula)."""
    values, i = set(), 0
    while lo + i * step <= hi + 1e-9:
        values.add(round(lo + i * step, 6))
        i += 1
    return values


def _layer_choices(o: PipelineOptions) -> list[tuple]:
    """Every distinct blur layer, built operation by operation."""
    ops = {"G": [BlurOp("gaussian", k) for k in o.gaussian_sizes],
           "M": [BlurOp("motion", k, d) for k in o.motion_sizes for d in o.directions]}
    return [layer for s in o.sequences
            for layer in itertools.product(*(ops[c] for c in degrade.SEQUENCES[s]))]


def brute_force_count(o: PipelineOptions) -> int:
    """Enumerate every scenario of a small option set as a distinct tuple and count them."""
    blur = [()]
    if o.blur:
        per_layer = _layer_choices(o)
        blur = [combo for n in o.layers for combo in itertools.product(per_layer, repeat=n)]
    scales = sorted(_grid(*o.scale_range, o.count_step)) if o.rescale else [None]
    noise = sorted(_grid(*o.noise_range, o.count_step)) if o.noise else [None]
    return len(set(itertools.product(blur, scales, noise)))


@pytest.mark.parametrize("options", [
    PipelineOptions(**SMALL),
    PipelineOptions(layers=(1, 2), sequences=("M", "G>M"), gaussian_sizes=(15, 21), motion_sizes=(15,),
                    directions=("vertical", "diagonal"), scale_range=(2.0, 2.3), noise_range=(5.0, 5.2)),
    PipelineOptions(layers=(2, 3), sequences=("G>M>G", "M>G"), gaussian_sizes=(15,), motion_sizes=(15, 21),
                    directions=("horizontal",), rescale=False, noise_range=(9.5, 10.0)),
    PipelineOptions(layers=(3,), sequences=("M",), motion_sizes=(15, 41), directions=("vertical", "anti-diagonal"),
                    scale_range=(3.0, 3.0), noise=False, count_step=0.5),
    PipelineOptions(blur=False, scale_range=(2.0, 4.0), noise_range=(5.0, 10.0)),
    PipelineOptions(blur=False, scale_range=(2.0, 3.0), noise_range=(5.0, 6.0), count_step=0.3),
    PipelineOptions(blur=False, rescale=False, noise=False),
])
def test_count_scenarios_matches_brute_force_enumeration(options):
    c = degrade.count_scenarios(options)
    assert c.total == brute_force_count(options)
    assert c.total == c.blur * c.scales * c.noise_levels


def test_count_scenarios_for_the_defaults():
    o = PipelineOptions()
    c = degrade.count_scenarios(o)
    # Brute force where it is feasible: every single layer, and the discretised scale/noise grids.
    assert c.per_layer == len(set(_layer_choices(o))) == 24 + 144 + 144 + 864 == 1176
    assert c.scales == len(_grid(2.0, 4.0, 0.1)) == 21
    assert c.noise_levels == len(_grid(5.0, 10.0, 0.1)) == 51
    assert c.blur == 1176 + 1176 ** 2 + 1176 ** 3 == 1_627_763_928
    # The thesis (and SPEC/issue 2 after it) state 1,743,940,018,728, built on arithmetic slips:
    # it writes 1176**3 = 1,626,943,776 (it is 1,626,379,776), and its own sum and product do not
    # match either (1,176 + 1,382,976 + 1,626,943,776 = 1,628,327,928, not 1,628,328,728; and
    # 1,628,328,728 x 21 x 51 = 1,743,940,067,688). The correct enumeration of the thesis' options:
    assert c.total == 1_743_335_166_888 == (1176 + 1176 ** 2 + 1176 ** 3) * 21 * 51


def test_every_sampled_blur_is_one_of_the_counted_layers():
    o = PipelineOptions(layers=(1,), sequences=("M", "G>M"), gaussian_sizes=(15, 21), motion_sizes=(15, 21),
                        directions=("vertical",), rescale=False, noise=False)
    counted = set(_layer_choices(o))
    rng = np.random.default_rng(0)
    seen = {degrade.sample_recipe(rng, o).layers[0] for _ in range(300)}
    assert seen == counted and degrade.count_scenarios(o).total == len(counted) == 2 + 4


def test_kernel_sizes_are_bounded():
    from smfd.degrade import MAX_KERNEL_SIZE

    with pytest.raises(ValueError, match="between 1 and"):
        PipelineOptions(gaussian_sizes=(MAX_KERNEL_SIZE + 2,))
    recipe = Recipe(layers=((BlurOp("gaussian", 30001),),)).to_dict()
    with pytest.raises(ValueError, match="invalid blur operation"):
        Recipe.from_dict(recipe)


# ---------------------------------------------------------------- JPEG (not in the thesis)

def test_jpeg_is_off_in_the_thesis_pipeline_and_leaves_other_draws_unchanged():
    assert not PipelineOptions().jpeg and degrade.PRESETS["thesis"] == PipelineOptions()
    for seed in range(5):
        plain = degrade.sample_recipe(np.random.default_rng(seed))
        jpeg = degrade.sample_recipe(np.random.default_rng(seed), PipelineOptions(jpeg=True))
        assert plain.jpeg_quality is None and 30 <= jpeg.jpeg_quality <= 95
        assert (jpeg.layers, jpeg.scale, jpeg.noise_sigma) == (plain.layers, plain.scale, plain.noise_sigma)


def test_jpeg_share_compresses_about_that_share():
    options = PipelineOptions(jpeg=True, jpeg_share=0.5, jpeg_range=(40, 40))
    qualities = [degrade.sample_recipe(np.random.default_rng(s), options).jpeg_quality for s in range(400)]
    assert set(qualities) == {None, 40}
    assert 0.4 < qualities.count(40) / len(qualities) < 0.6


def test_jpeg_stage_is_a_real_jpeg_roundtrip_and_replays(small_face, tmp_path):
    recipe = Recipe(jpeg_quality=20)
    out = degrade.apply(small_face, recipe)
    ok, buf = cv2.imencode(".jpg", small_face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert np.array_equal(out, cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    assert not np.array_equal(out, small_face)
    recipe.save(tmp_path / "r.json")
    assert np.array_equal(degrade.apply(small_face, Recipe.load(tmp_path / "r.json")), out)
    gray = degrade.apply(small_face[..., 0], recipe)
    assert gray.shape == small_face.shape[:2]


def test_recipes_written_before_the_jpeg_stage_still_load():
    data = Recipe(scale=2.0).to_dict()
    del data["jpeg_quality"]
    assert Recipe.from_dict(data) == Recipe(scale=2.0)
    with pytest.raises(ValueError, match="jpeg_quality"):
        Recipe.from_dict({**data, "jpeg_quality": 0})


@pytest.mark.parametrize("bad, message", [
    (dict(jpeg=True, jpeg_range=(50, 20)), "jpeg_range"),
    (dict(jpeg=True, jpeg_range=(0, 20)), "jpeg_range"),
    (dict(jpeg=True, jpeg_range=(30.5, 90)), "jpeg_range"),
    (dict(jpeg=True, jpeg_share=0.0), "jpeg_share"),
    (dict(jpeg=True, jpeg_at="photo"), "jpeg_at must be one of source, crop, got 'photo'"),
])
def test_bad_jpeg_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        PipelineOptions(**bad)


def test_jpeg_multiplies_the_scenario_count():
    base = degrade.count_scenarios().total
    assert degrade.count_scenarios(PipelineOptions(jpeg=True)).total == base * 66
    assert degrade.count_scenarios(PipelineOptions(jpeg=True, jpeg_share=0.5)).total == base * 67
