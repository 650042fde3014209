"""Building blocks, both networks, every ablation switch, and checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from smfd import checkpoint
from smfd.blocks import (CBAM, PixelShuffleUpsample, PostProcess, ResidualDenseBlock, TransposeUpsample,
                         UpsampleMerge)
from smfd.errors import InputError
from smfd.models import (ABLATIONS, MaskNet, MaskNetConfig, SMFDConfig, SMFDNet, build, config_from_dict,
                         config_to_dict, count_macs, count_parameters, mask_probabilities, mirrored_restoration,
                         one_hot_mask, rgb_to_gray)

torch.manual_seed(0)


def test_residual_dense_block_wiring():
    block = ResidualDenseBlock(5, 8, layers=3)
    # Dense connectivity: layer i sees the input plus all i earlier outputs.
    assert [layer[0].in_channels for layer in block.dense] == [5, 13, 21]
    assert block.fuse.in_channels == 5 + 3 * 8 and block.fuse.out_channels == 8
    assert block.project.in_channels == 5 and block.project.kernel_size == (1, 1)
    y = block(torch.randn(2, 5, 16, 12))
    assert y.shape == (2, 8, 16, 12) and (y >= 0).all()  # ends with ReLU


def test_residual_path_carries_the_input():
    block = ResidualDenseBlock(3, 3, layers=1).eval()
    with torch.no_grad():
        block.fuse.weight.zero_()
        block.fuse.bias.zero_()
        block.project.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        block.project.bias.zero_()
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(block(x), x)  # fused branch silenced: output = ReLU(identity projection)


def test_cbam_only_scales_features():
    cbam = CBAM(16)
    x = torch.randn(2, 16, 10, 10)
    y = cbam(x)
    assert y.shape == x.shape
    # Both attentions multiply by sigmoids in (0, 1): magnitudes shrink, signs are kept.
    assert (y.abs() <= x.abs() + 1e-6).all() and (torch.sign(y) == torch.sign(x)).all()
    assert not torch.allclose(y, x)


def test_upsamplers_double_resolution():
    x = torch.randn(1, 12, 8, 8)
    assert PixelShuffleUpsample(12, 6)(x).shape == (1, 6, 16, 16)
    assert TransposeUpsample(12, 6)(x).shape == (1, 6, 16, 16)
    skip = torch.randn(1, 4, 16, 16)
    for mode, channels in (("pixelshuffle-attention", 10), ("transpose-attention", 10), ("plain", 16)):
        merge = UpsampleMerge(12, 4, 6, mode)
        assert merge.out_channels == channels
        assert merge(x, skip).shape == (1, channels, 16, 16)
    with pytest.raises(ValueError, match="upsample mode must be one of"):
        UpsampleMerge(12, 4, 6, "bicubic")


def test_post_process_formula():
    x = torch.rand(2, 3, 4, 4)
    mean = x.mean((1, 2, 3), keepdim=True)
    expected = (x - mean) * 2.0 + mean + 0.1
    assert torch.allclose(PostProcess()(x), expected)


@pytest.mark.parametrize("size", [128, 256])
def test_network_shapes(size):
    masknet, smfd = MaskNet().eval(), SMFDNet().eval()
    with torch.no_grad():
        logits = masknet(torch.rand(1, 1, size, size))
        out = smfd(torch.rand(1, 3, size, size), one_hot_mask(torch.zeros(1, size, size, dtype=torch.long)))
    assert logits.shape == (1, 5, size, size)
    assert out.shape == (1, 3, size, size)
    assert MaskNet(MaskNetConfig(classes=19))(torch.rand(1, 1, 64, 64)).shape == (1, 19, 64, 64)


def test_parameter_counts_match_the_thesis():
    mask = count_parameters(MaskNet())["total"]
    deblur = count_parameters(SMFDNet())["total"]
    # Ours exactly (any change of the architecture shows), within 4 % and 1 % of the thesis' counts
    assert (mask, deblur) == (5_583_541, 7_505_089)
    assert abs(mask - 5_416_159) / 5_416_159 < 0.04 and abs(deblur - 7_532_601) / 7_532_601 < 0.01


def test_bad_input_size_is_explained():
    with pytest.raises(ValueError, match="multiples of 8"):
        SMFDNet()(torch.rand(1, 3, 100, 100), torch.rand(1, 5, 100, 100))


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_builds_trains_and_its_switches_reach_their_modules(name):
    config = dataclasses.replace(SMFDConfig(), **ABLATIONS[name])
    model = build(config)
    x, mask = torch.rand(2, 3, 32, 32), one_hot_mask(torch.randint(0, 5, (2, 32, 32)))
    out = model(x, mask)
    out.mean().backward()
    assert out.shape == x.shape
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    has_mask_branch = model.mask_encoder is not None
    assert has_mask_branch == config.use_mask
    if not config.use_mask:
        assert torch.allclose(model.eval()(x, None), model(x, mask))  # the mask is really unused
    assert isinstance(model.post, PostProcess) == config.post_process
    upsampler = {"plain": torch.nn.Upsample, "transpose-attention": TransposeUpsample,
                 "pixelshuffle-attention": PixelShuffleUpsample}[config.upsample]
    assert all(isinstance(merge.up, upsampler) for merge in model.decoder.merges)  # the switch reaches it


def test_ablations_are_distinct_configurations():
    configs = {dataclasses.replace(SMFDConfig(), **o) for o in ABLATIONS.values()}
    assert len(configs) == len(ABLATIONS)
    counts = {n: count_parameters(build(dataclasses.replace(SMFDConfig(), **o)))["total"]
              for n, o in ABLATIONS.items()}
    assert counts["no-mask"] < counts["plain-upsampling"]
    upsampling = ("plain-upsampling", "attention-transpose", "attention-pixelshuffle")
    assert len({counts[n] for n in upsampling}) == 3  # three different decoders
    assert counts["attention-pixelshuffle"] == counts["full"]  # post-processing has no weights


def test_config_round_trip_and_validation():
    for config in (MaskNetConfig(classes=19), SMFDConfig(use_mask=False, residual=True)):
        assert config_from_dict(config_to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict({**config_to_dict(SMFDConfig()), "wings": 2})


@pytest.mark.parametrize("half", [False, True])
def test_checkpoint_round_trip(tmp_path, half):
    model = SMFDNet(SMFDConfig(residual=True)).eval()
    path = checkpoint.save(tmp_path / "m.safetensors", model, half=half, note="test")
    loaded = checkpoint.load(path)
    assert loaded.config == model.config and loaded.info == {"note": "test"}
    x, mask = torch.rand(1, 3, 64, 64), one_hot_mask(torch.randint(0, 5, (1, 64, 64)))
    with torch.no_grad():
        diff = (loaded(x, mask) - model(x, mask)).abs().max().item()
    assert diff < (2e-2 if half else 1e-6)


def test_checkpoint_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="not an SMFD checkpoint"):
        checkpoint.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a safetensors"):
        checkpoint.load(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="not found"):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_checkpoint_names_a_wrong_or_unfitting_network(tmp_path):
    import json
    import os

    from safetensors.torch import save_file

    small = MaskNet(MaskNetConfig(encoder=(8, 8, 8, 8), decoder=(8, 8, 8), head=8))
    path = checkpoint.save(tmp_path / "mask.safetensors", small)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # readable like any other file
    with pytest.raises(InputError, match="holds a 'mask' network, expected 'deblur'"):
        checkpoint.load(path, kinds=("deblur",))
    other = config_to_dict(dataclasses.replace(small.config, head=16))  # weights of another shape
    save_file(small.state_dict(), tmp_path / "unfit.safetensors",
              metadata={"format": checkpoint.FORMAT, "config": json.dumps(other)})
    with pytest.raises(InputError, match=r"unfit.safetensors: the checkpoint does not rebuild its network \(size "
                                         r"mismatch for [\w.]+: .*torch\.Size\(\[8, 8, 3, 3\]\) from checkpoint, the shape in current model "
                                         r"is torch\.Size\(\[16, 8, 3, 3\]\)\.; 11 more\)$"):
        checkpoint.load(tmp_path / "unfit.safetensors")  # torch's header alone did not say what differs


def test_gray_and_one_hot():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 1] = 1.0
    assert torch.allclose(rgb_to_gray(x), torch.full((1, 1, 2, 2), 0.587))
    labels = torch.tensor([[[0, 4], [2, 1]]])
    hot = one_hot_mask(labels)
    assert hot.shape == (1, 5, 2, 2) and torch.equal(hot.argmax(1), labels)


def test_match_input_mean_keeps_the_inputs_colour():
    model = SMFDNet(SMFDConfig(match_input_mean=True)).eval()
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.2
    with torch.no_grad():
        y = model(x, one_hot_mask(torch.randint(0, 5, (2, 32, 32))))
    assert torch.allclose(y.mean((2, 3)), x.mean((2, 3)), atol=1e-5)


def test_mask_probabilities_are_a_distribution_and_mirror_equivariant():
    model = MaskNet().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        p, q = mask_probabilities(model, x), mask_probabilities(model, x.flip(-1))
    assert p.shape == (2, 5, 64, 64)
    assert torch.allclose(p.sum(1), torch.ones(2, 64, 64), atol=1e-5)
    assert torch.allclose(q, p.flip(-1), atol=1e-5)


def test_mirrored_restoration_is_the_mean_of_the_face_s_and_its_mirror_s():
    """SMFD-UNet in the Restorer: the mean of the restoration of the face and the mirrored
    restoration of its mirror image, so a mirrored face (with its mirrored mask) gets the mirrored
    restoration; one batch of two faces gives each face's own."""
    torch.manual_seed(0)
    model = SMFDNet(SMFDConfig(encoder=(8, 16), mask_encoder=(4, 8), decoder=(8,), head=8)).eval()
    x, m = torch.rand(2, 3, 32, 32), one_hot_mask(torch.randint(0, 5, (2, 32, 32)))
    with torch.no_grad():
        out = mirrored_restoration(model, x, m)
        by_hand = (model(x, m) + model(x.flip(-1), m.flip(-1)).flip(-1)) / 2
        flipped = mirrored_restoration(model, x.flip(-1), m.flip(-1))
        first = mirrored_restoration(model, x[:1], m[:1])
    assert out.shape == (2, 3, 32, 32) and not torch.allclose(out, model(x, m), atol=1e-3)
    assert torch.allclose(out, by_hand, atol=1e-5)
    assert torch.allclose(flipped, out.flip(-1), atol=1e-5)
    assert torch.allclose(first, out[:1], atol=1e-5)


def test_count_macs_counts_every_convolution():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    net.config = MaskNetConfig(in_channels=3)
    assert count_macs(net, 16) == 16 * 16 * (8 * 3 * 9 + 4 * 8)
    # The decoder holds most of SMFD-UNet's compute; a lighter decoder is a config away.
    full, light = SMFDNet(SMFDConfig()), SMFDNet(SMFDConfig(decoder=(128, 64, 32), shuffle_kernel=1))
    assert 30e9 < count_macs(full) < 36e9 and count_macs(light) < count_macs(full) / 3


def test_smfd_info_prints_parameters_and_compute_of_a_weights_folder(tmp_path, capsys):
    """``smfd info --weights DIR``: each network's parameters and GMAC per 256x256 face (each network
    twice: the face and its mirror image), and their sum; a folder without weights is named."""
    from smfd.cli import main
    from smfd.restorer import save_random_weights

    light = SMFDConfig(decoder=(128, 64, 32), shuffle_kernel=1)
    folder = save_random_weights(tmp_path / "w", deblur_config=light)
    main(["info", "--weights", str(folder)])
    out = capsys.readouterr().out
    mask_macs, smfd_macs = count_macs(MaskNet(MaskNetConfig())), count_macs(SMFDNet(light))
    assert f"{'SMFD-UNet':15s} {count_parameters(SMFDNet(light))['total']:>10,} parameters" in out
    assert f"{smfd_macs / 1e9:.1f} GMAC x 2 passes" in out and f"{mask_macs / 1e9:.1f} GMAC x 2 passes" in out
    assert f"{'together':15s} {2 * (mask_macs + smfd_macs) / 1e9:.1f} GMAC per face" in out
    assert main(["info", "--weights", str(tmp_path / "none")]) == 2
    assert "model weights not found" in capsys.readouterr().err


def test_config_overrides_are_checked_against_each_field():
    """with_overrides (--set, checkpoint configs): the values a network builds from pass, others are
    named; dense_layers 0 (no 3x3 convolutions) is allowed, a width of 0 or an even kernel before
    PixelShuffle (the first face would fail on its size) is not."""
    from smfd.models import with_overrides

    assert with_overrides(SMFDConfig(), {"dense_layers": 0, "contrast": 2, "decoder": [64, 32, 16]}).decoder == (64, 32, 16)
    for field, value, says in (("dense_layers", -1, "an integer of at least 0"), ("head", 0, "a positive integer"),
                               ("residual", "yes", "true or false"), ("brightness", float("nan"), "a number in"),
                               ("decoder", [], "a list of positive integers"),
                               ("shuffle_kernel", 2, "an odd positive integer")):
        with pytest.raises(ValueError, match=f"^{field} must be {says}"):
            with_overrides(SMFDConfig(), {field: value})
    with pytest.raises(TypeError, match="SMFDConfig has no field 'input_scale'"):
        with_overrides(SMFDConfig(), {"input_scale": 0.5})
    assert with_overrides(SMFDConfig(), {"shuffle_kernel": 1}).shuffle_kernel == 1
    # a network without a mask of more levels than the (unused) mask encoder's default
    deep = build(SMFDConfig(use_mask=False, encoder=(8, 8, 8, 8, 8), decoder=(8, 8, 8, 8)))
    assert deep(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
