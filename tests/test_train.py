"""Training on real faces: the loss goes down, runs resume, and the torchrun (DDP) path works."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smfd import checkpoint
from smfd.errors import InputError
from smfd.train import TEMPORARY, EpochSampler, Trainer, TrainSettings

TINY = dict(epochs=2, batch=4, patch=64, samples_per_epoch=8, val_faces=4, workers=0)


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task,loss", [("deblur", "mse"), ("mask", "dice+ce")])
def test_real_training_lowers_the_loss(celeba, tmp_path, task, loss):
    torch.manual_seed(0)
    trainer = Trainer(TrainSettings(task=task, data=(str(celeba),), out=str(tmp_path), loss=loss, **TINY))
    loader = trainer.loaders()[2]
    batch = next(iter(loader))  # one real batch of degraded faces, learned repeatedly
    rng = np.random.default_rng(0)
    trainer.net.train()
    losses = []
    for _ in range(25):
        _, value = trainer.forward(batch, trainer.net, 0.0, rng)
        trainer.optimizer.zero_grad()
        value.backward()
        trainer.optimizer.step()
        losses.append(value.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_run_writes_checkpoints_and_resumes(celeba, tmp_path):
    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), **TINY)
    result = Trainer(settings).run()
    assert result["epochs"] == 2
    assert [r["epoch"] for r in _rows(tmp_path / "log.csv")] == ["1", "2"]
    best = checkpoint.load(tmp_path / "best.safetensors")
    ssims = [float(r["ssim"]) for r in _rows(tmp_path / "log.csv")]
    assert best.info["epoch"] == 1 + int(np.argmax(ssims)) and "ssim" in best.info["scores"]  # higher is better

    settings.epochs = 3  # the same command with more epochs continues after epoch 2, where it stood
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = Trainer(settings)
    assert not all(torch.equal(v, saved["model"][k]) for k, v in resumed.model.state_dict().items())
    assert resumed.load_state() and resumed.epoch == 2 and len(resumed.history) == 2
    assert all(torch.equal(v, saved["model"][k]) for k, v in resumed.model.state_dict().items())
    moments = resumed.optimizer.state_dict()["state"]
    assert moments and all(torch.equal(moments[i]["exp_avg"], saved["optimizer"]["state"][i]["exp_avg"])
                           for i in moments)
    assert resumed.scheduler.state_dict() == saved["scheduler"]
    assert resumed.run()["epochs"] == 3
    assert [r["epoch"] for r in _rows(tmp_path / "log.csv")] == ["1", "2", "3"]


def test_lr_drops_and_early_stopping(celeba, tmp_path):
    settings = TrainSettings(task="mask", data=(str(celeba),), out=str(tmp_path), lr_patience=1,
                             early_stop=2, **{**TINY, "epochs": 20})
    trainer = Trainer(settings)
    trainer.validate = lambda loader: {"dice": 0.5, "jaccard": 0.4}  # a metric that never improves
    trainer.train_epoch = lambda loader: {"train_loss": 1.0}
    result = trainer.run()
    assert result["epochs"] == 3  # best at epoch 1, then 2 epochs without improvement
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "log.csv")]  # the rate after each epoch's step
    assert lrs == pytest.approx([1e-3, 2e-4, 4e-5])  # lowered after epochs 2 and 3, without improvement


def test_generated_masks_need_a_mask_model(celeba, tmp_path):
    from smfd.restorer import DEBLUR_WEIGHTS, WEIGHTS_DIR

    with pytest.raises(ValueError, match="mask-model"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), mask_source="mix")
    swapped = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), mask_source="mix",
                            mask_model=str(WEIGHTS_DIR / DEBLUR_WEIGHTS), **TINY)
    with pytest.raises(InputError, match="holds a 'deblur' network, expected 'mask' or 'smp'"):
        Trainer(swapped)


def test_what_needs_no_face_is_refused_before_the_faces_are_read(celeba, tmp_path, monkeypatch):
    """Reading a large dataset's faces takes minutes: a missing network, a network of the wrong
    kind or a run folder of other settings is named first."""
    import smfd.train

    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "run"), **TINY)
    Trainer(settings).save_state()
    monkeypatch.setattr(smfd.train, "training_records", lambda s: pytest.fail("the faces were read first"))
    with pytest.raises(InputError, match="--lr: run folder 0.001, command 0.002"):
        Trainer(dataclasses.replace(settings, lr=2e-3))
    with pytest.raises(InputError, match="not found"):
        Trainer(dataclasses.replace(settings, out=str(tmp_path / "other"), mask_source="mix",
                                    mask_model=str(tmp_path / "missing.safetensors")))
    with pytest.raises(InputError, match="not found"):
        Trainer(dataclasses.replace(settings, out=str(tmp_path / "other"), init=str(tmp_path / "missing.safetensors")))


def test_sampler_covers_faces_and_splits_ranks():
    full = list(EpochSampler(10, 25, seed=1))
    assert len(full) == 25 and len(set(full)) == 25 and sorted(i % 10 for i in full[:10]) == list(range(10))
    ranks = [list(EpochSampler(10, 25, seed=1, rank=r, world=2)) for r in (0, 1)]
    # equal shares (an extra step on one rank would wait forever for the other's gradients)
    assert len(ranks[0]) == len(ranks[1]) == 12 and sorted(ranks[0] + ranks[1]) == sorted(full[:24])
    second = EpochSampler(10, 25, seed=1)
    second.set_epoch(1)
    assert list(second) != full


def test_torchrun_ddp_with_two_cpu_processes(celeba, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "smfd", "train", "deblur", str(celeba),
           "--out", str(tmp_path), "--epochs", "1", "--batch", "4", "--patch", "64",
           "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "world 2" in done.stdout
    assert len(_rows(tmp_path / "log.csv")) == 1  # only rank 0 logs
    assert checkpoint.load(tmp_path / "best.safetensors").config.kind == "deblur"


def test_mismatched_init_and_resume_are_explained(celeba, tmp_path):
    from smfd.models import SMFDConfig, SMFDNet, build
    from smfd.train import _initialise, settings_changes

    checkpoint.save(tmp_path / "plain.safetensors", SMFDNet())
    with pytest.raises(ValueError, match="does not fit"):
        Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"),
                              init=str(tmp_path / "plain.safetensors"), config={"use_mask": False}, **TINY))
    with pytest.raises(ValueError, match="--init-partial needs --init"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), init_partial=True, **TINY)
    # settings without tensors (residual, ...) are a network's too: one left out is a forgotten --set
    residual = build(SMFDConfig(residual=True))
    with pytest.raises(InputError, match=re.escape("differs from the one being trained in residual; add "
                                                   "--set residual=true to train it further")):
        _initialise(SMFDNet(), residual, "residual.safetensors", False)
    assert _initialise(SMFDNet(), residual, "r", False, {"residual"}).startswith("all ")  # --set residual=false
    first = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "b"), **TINY))
    first.out.mkdir()
    first.save_state()
    with pytest.raises(ValueError, match=re.escape("--set/--ablation: run folder {}, command {'upsample': 'plain'}")):
        Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "b"),
                              config={"upsample": "plain"}, **TINY))
    assert settings_changes(first.s, dataclasses.replace(first.s, augment=False, data=("other",))) == [
        f"the DATA folders: run folder ({str(celeba.resolve())!r},), command ({str(Path('other').resolve())!r},)",
        "--no-augment: run folder False, command True"]
    with pytest.raises(ValueError, match=re.escape("--samples-per-epoch must be at least --batch (16), got 8")):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), batch=16, samples_per_epoch=8)


def test_generated_masks_are_made_on_the_whole_face_as_at_inference(celeba, tmp_path):
    """With a mask generator and patches, SMFD sees the generator's mask of the whole face cropped
    to the patch (not a mask of the patch alone), as probabilities for a soft_mask network."""
    from smfd.models import MaskNet, mask_probabilities

    torch.manual_seed(0)
    mask_path = checkpoint.save(tmp_path / "mask.safetensors", MaskNet().eval())
    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "run"),
                             mask_source="generated", mask_model=str(mask_path), preset="real",
                             config={"soft_mask": True}, **TINY)
    trainer = Trainer(settings)
    batch = next(iter(trainer.loaders()[2]))
    assert batch["blurry_full"].shape[-1] == 256 and batch["blurry"].shape[-1] == 64
    masks = trainer.masks_for(batch, 1.0, np.random.default_rng(0))
    with torch.no_grad():
        whole = mask_probabilities(trainer.mask_model, batch["blurry_full"])
    for m, w, (y, x) in zip(masks, whole, batch["origin"].tolist()):
        assert torch.allclose(m, w[:, y:y + 64, x:x + 64], atol=1e-5)
    assert masks.shape == (4, 5, 64, 64) and 0 < masks.max() < 1  # probabilities, not one-hot
    # the patch is the window of the whole face that origin names
    b, f, (y, x) = batch["blurry"][0], batch["blurry_full"][0], batch["origin"][0].tolist()
    assert torch.equal(b, f[:, y:y + 64, x:x + 64])


def test_unknown_preset_is_refused(celeba, tmp_path):
    with pytest.raises(ValueError, match="preset must be one of thesis, real"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), preset="jpeg")


def test_resume_with_other_settings_is_refused_and_names_them(celeba, tmp_path, capsys):
    from smfd.cli import main

    out = tmp_path / "run"
    first = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(out), size=64, **{**TINY, "patch": 32}))
    first.out.mkdir()
    first.save_state()
    (out / "settings.json").write_text("earlier")
    base = ["train", "deblur", str(celeba), "--out", str(out), "--epochs", "2", "--batch", "4", "--patch", "32",
            "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "0"]
    assert main(base + ["--size", "32", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--size: run folder 64, command 32" in err and "--lr: run folder" in err
    assert (out / "settings.json").read_text() == "earlier"  # nothing rewritten


def test_a_second_run_into_a_folder_in_use_is_refused_before_any_work(celeba, tmp_path, capsys):
    from smfd.cli import main
    from smfd.train import run_lock

    out, other = tmp_path / "run", tmp_path / "other"
    args = ["train", "deblur", str(celeba), "--out", str(out), "--size", "32", "--patch", "32",
            "--epochs", "1", "--batch", "4", "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "0"]
    with run_lock(out), run_lock(other):  # the first run's lock; another folder's is apart
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another training run is using this folder now" in err
    assert not out.exists() and not other.exists()  # folders made for the locks, nothing saved: gone
    with run_lock(out):  # released with the first run
        pass
    (out / "notes").mkdir(parents=True)
    with run_lock(out):
        pass
    assert [p.name for p in out.iterdir()] == ["notes"]  # a folder that holds something stays, its lock gone


def test_a_batch_larger_than_the_training_faces_is_refused(celeba, tmp_path, capsys):
    """An epoch with fewer faces than --batch has no full batch (drop_last): it would 'train' the
    untrained network and save it as the best."""
    from smfd.cli import main

    out = tmp_path / "run"
    assert main(["train", "deblur", str(celeba), "--out", str(out), "--batch", "4096", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fill no batch of --batch 4096" in err, err
    assert not out.exists()


@pytest.mark.parametrize("found", [("best.safetensors",), ("settings.json",), ("best.safetensors", "log.csv")])
def test_a_folder_with_weights_a_log_or_settings_but_no_state_is_not_trained_over(celeba, tmp_path, capsys, found):
    from smfd.cli import main

    for name in found:
        (tmp_path / name).write_text("another run's")
    args = ["train", "deblur", str(celeba), "--out", str(tmp_path), "--epochs", "1", "--batch", "4",
            "--patch", "32", "--size", "64", "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ", ".join(found) + " but no state.pt" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(found)  # nothing written
    assert all((tmp_path / name).read_text() == "another run's" for name in found)


def test_unreadable_dataset_files_are_named_before_the_first_epoch(celeba, tmp_path, capsys):
    """An empty or truncated image, a mask that is not an image or holds no CelebAMask-HQ class stop
    the run before anything is written: found later, inside an epoch, the file could only be mended
    (a run's faces are recorded: removing one would lose the run)."""
    from smfd.cli import main

    images = sorted((celeba / "images").iterdir())[:30]
    body = images[-1].read_bytes()
    out_of_range = tmp_path / "out-of-range.png"
    Image.fromarray(np.full((512, 512), 19, np.uint8), "L").save(out_of_range)
    broken = {"empty image": ("images", b"", "file is empty"),
              "truncated image": ("images", body[:len(body) * 6 // 10], "corrupt or truncated image ("),
              "mask not an image": ("masks", b"not a png", "not an image file (unrecognised format)"),
              "mask label 19": ("masks", out_of_range.read_bytes(), "class index 19 outside 0..18")}
    for case, (folder, content, says) in broken.items():
        data = tmp_path / case.replace(" ", "-")
        (data / "images").mkdir(parents=True)
        (data / "masks").mkdir()
        for image in images:
            (data / "images" / image.name).symlink_to(image)
            (data / "masks" / f"{image.stem}.png").symlink_to(celeba / "masks" / f"{image.stem}.png")
        victim = data / folder / (images[-1].name if folder == "images" else f"{images[-1].stem}.png")
        victim.unlink()
        victim.write_bytes(content)
        out = tmp_path / f"run-{case}"
        args = ["train", "deblur", str(data), "--out", str(out), "--batch", "4", "--workers", "0"]
        assert main(args) == 2, case
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"smfd: error: {victim}: {says}") and len(err.splitlines()) == 1, (case, err)
        assert not out.exists()


def test_a_corrupt_face_found_by_a_loader_worker_is_one_line_naming_it(celeba, tmp_path):
    """A face damaged after the check before the first epoch is found when a DataLoader worker
    first loads it; torch wraps the error in the worker's traceback, and the user still gets one
    line naming the file. (In a process
    of its own: loader workers leave torch's SIGCHLD handler behind in the process that started
    them, and the test process must not keep it.)"""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for image in sorted((celeba / "images").iterdir())[:30]:
        body = image.read_bytes()
        (data / "images" / image.name).write_bytes(body[:len(body) * 6 // 10])  # header whole, scan cut
        mask = celeba / "masks" / f"{image.stem}.png"
        (data / "masks" / mask.name).write_bytes(mask.read_bytes())
    args = ["train", "deblur", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch", "4",
            "--patch", "32", "--size", "64", "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "1"]
    # as if the files were damaged after the check before the first epoch (which finds these)
    unchecked = ("import sys; from smfd import data; from smfd.cli import main; "
                 "data.check_files = lambda records: None; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", unchecked, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith(f"smfd: error: {data / 'images'}") and ".jpg" in err, done.stderr
    assert "Traceback" not in done.stderr and "corrupt or truncated image" in err
    # the header check let it through (it would say "not an image file"); a loader worker found it
    # decoding, here the validation loader's first pass (the blurry inputs' reference figures)
    assert "not an image file" not in err


def test_an_unreadable_state_is_named(celeba, tmp_path, capsys):
    from smfd.cli import main

    (tmp_path / "state.pt").write_bytes(b"not a checkpoint")
    args = ["train", "deblur", str(celeba), "--out", str(tmp_path), "--epochs", "1", "--batch", "4",
            "--patch", "32", "--size", "64", "--samples-per-epoch", "8", "--val-faces", "4", "--workers", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "state.pt: not a readable training state" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_options_a_run_cannot_use_are_refused_before_it_starts(celeba, tmp_path, capsys):
    """Each one line (exit 2) before any training, and nothing is written: config overrides that
    build a network that cannot train on this task's data, options the run would ignore, a
    dataset without masks or given twice, a network of the other task to start from, a file in
    the way of the run's own files, a state.pt of something else."""
    from smfd.cli import main
    from smfd.restorer import MASK_WEIGHTS, WEIGHTS_DIR

    ffhq = celeba.parent / "ffhq_mini"
    out = tmp_path / "run"
    fast = ["--epochs", "1", "--batch", "4", "--patch", "32", "--size", "64", "--samples-per-epoch", "8",
            "--val-faces", "4", "--workers", "0"]
    cases = [
        (["deblur", "--set", "shuffle_kernel=2"], "shuffle_kernel must be an odd positive integer, got 2"),
        (["deblur", "--set", "mask_channels=3"], "SMFD-UNet reads RGB faces (image_channels 3) and the 5 groups"),
        (["mask", "--set", "classes=3"], "a mask network predicts 5 groups or 19 classes"),
        (["mask", "--set", "arch=unet", "--set", "in_channels=2"], "no network can be trained from them"),
        (["mask", "--set", "arch=unet", "--set", "encoder=nope"], "Wrong encoder name `nope`"),
        (["deblur", "--mask-model", "/nope"], "--mask-model is read with --mask-source generated or mix"),
        (["mask", "--mask-source", "mix", "--mask-model", "/nope"], "--mask-source and --mask-model choose"),
        (["mask", "--cross-validate", "--fold", "3"], "--fold does not go with --cross-validate"),
        (["deblur", "--ablation", "no-mask", "--set", "use_mask=true"],
         "--set use_mask=true contradicts --ablation no-mask (use_mask=false)"),
        (["deblur", str(ffhq)], f"{ffhq}: has no faces with masks, which this training needs"),
        (["mask", f"{celeba}/"], f"{celeba}: dataset given twice"),
        (["deblur", "--init", str(WEIGHTS_DIR / MASK_WEIGHTS), "--init-partial"],
         "holds a 'mask' network, expected 'deblur'"),
    ]
    for extra, says in cases:
        task, *rest = extra
        assert main(["train", task, str(celeba), *rest, "--out", str(out), *fast]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, (extra, err)
        assert not out.exists()
    for name in ("state.pt", "log.csv", "settings.json"):  # a folder in the way, found before the first epoch
        (out / name).mkdir(parents=True)
        assert main(["train", "mask", str(celeba), "--out", str(out), *fast]) == 2
        assert capsys.readouterr().err.strip() == (f"smfd: error: {out / name}: is in the way of the run's file "
                                                   "of that name (a folder?); remove it or choose another --out")
        assert [p.name for p in out.iterdir()] == [name]
        (out / name).rmdir()
    for state, says in (({"model": {}}, "not a training state of smfd train (lacks optimizer, scheduler"),
                        ([1, 2], "not a training state of smfd train"),
                        ({k: 0 for k in ("model", "optimizer", "scheduler", "epoch", "best", "bad_epochs",
                                         "history")} | {"settings": {"task": "mask", "bogus": 1}},
                         "written by another version of smfd train (settings bogus unknown here)")):
        torch.save(state, out / "state.pt")
        assert main(["train", "mask", str(celeba), "--out", str(out), *fast]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def test_a_run_saved_with_options_it_never_read_resumes_without_them(celeba, tmp_path):
    """state.pt files written before such options were refused: a --mask-model on a mask run, a
    dataset named twice. The command without them resumes."""
    settings = dict(task="mask", data=(str(celeba),), out=str(tmp_path), size=64, **TINY)
    old = Trainer(TrainSettings(**settings))
    old.s.mask_model, old.s.data = "old_generator.safetensors", (str(celeba), f"{celeba}/")
    old.out.mkdir(exist_ok=True)
    old.save_state()
    assert Trainer(TrainSettings(**settings)).load_state()


def test_a_label_map_that_is_not_one_is_named_before_the_first_epoch(celeba, tmp_path):
    from smfd.data import check_files, open_dataset

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for image in sorted((celeba / "images").iterdir())[:3]:
        (data / "images" / image.name).symlink_to(image)
        Image.open(celeba / "masks" / f"{image.stem}.png").convert("RGB").save(data / "masks" / f"{image.stem}.png")
    with pytest.raises(InputError, match=r"\.png: a label map must be a palette or grayscale PNG, got mode RGB"):
        check_files(open_dataset(data))


@pytest.mark.parametrize("where", ["before the state", "after the state"])
def test_an_interruption_leaves_log_and_checkpoint_in_step(celeba, tmp_path, monkeypatch, where):
    """A Ctrl-C (KeyboardInterrupt) while epoch 2 is being recorded: either before state.pt is
    replaced (the epoch is trained again) or right after it (best.safetensors and log.csv catch up
    on resume). Either way the log ends with each epoch once and best.safetensors matches it."""
    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), size=64,
                             **{**TINY, "epochs": 3, "patch": 32, "val_faces": 2})
    trainer = Trainer(settings)
    calls = {"n": 0}
    target, real = (torch, torch.save) if where == "before the state" else (Trainer, Trainer.write_outputs)
    name = real.__name__

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2
            if target is torch:  # half of state.pt's new copy is on disk
                assert TEMPORARY.fullmatch(Path(args[1]).name)  # a name resuming knows to remove
                whole = io.BytesIO()
                real(args[0], whole)
                Path(args[1]).write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(target, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.setattr(target, name, real)
    logged = [r["epoch"] for r in _rows(tmp_path / "log.csv")]
    assert logged == ["1"]  # the log never runs ahead of state.pt
    assert torch.load(tmp_path / "state.pt", weights_only=True)["epoch"] == (1 if target is torch else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "log.csv", "settings.json", "state.pt"]
    (tmp_path / ".smfd-partial-k3_9zq0a.pt").write_bytes(b"x" * 100)  # what a SIGKILL while saving leaves
    (tmp_path / "tmp_results.csv").write_text("the user's own")  # a name like mkstemp's own
    resumed = Trainer(settings)
    assert resumed.run()["epochs"] == 3
    assert not (tmp_path / ".smfd-partial-k3_9zq0a.pt").exists()  # removed on resuming
    assert (tmp_path / "tmp_results.csv").read_text() == "the user's own"
    rows = _rows(tmp_path / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [int(r["samples"]) for r in rows] == [8, 16, 24]
    best = checkpoint.load(tmp_path / "best.safetensors")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert best.info["epoch"] == state["best_epoch"]
    row = rows[state["best_epoch"] - 1]
    assert best.info["scores"]["ssim"] == pytest.approx(float(row["ssim"]))
    for k, v in best.state_dict().items():
        assert torch.equal(v, state["best_model"][k].float() if v.is_floating_point() else state["best_model"][k])


def test_partial_init_takes_the_encoders_of_a_wider_network(celeba, tmp_path):
    from smfd.models import SMFDNet

    shipped = SMFDNet()
    checkpoint.save(tmp_path / "wide.safetensors", shipped)
    light = {"decoder": [128, 64, 32], "shuffle_kernel": 1}
    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), config=light,
                                    init=str(tmp_path / "wide.safetensors"), init_partial=True, **TINY))
    wide, mine = checkpoint.load(tmp_path / "wide.safetensors").state_dict(), trainer.model.state_dict()
    taken = [k for k in mine if k in wide and wide[k].shape == mine[k].shape]
    assert any(k.startswith("decoder.") for k in mine) and not all(k in taken for k in mine)
    for k in taken:
        assert torch.equal(mine[k], wide[k]), k
    assert {k.split(".")[0] for k in taken} >= {"image_encoder", "mask_encoder"}
    assert re.match(rf"{len(taken)} of {len(mine)} tensors \(\d+% of the parameters\)", trainer.init_note)
    with pytest.raises(ValueError, match="--init-partial takes the tensors that fit"):
        Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "b"), config=light,
                              init=str(tmp_path / "wide.safetensors"), **TINY))


def test_a_fine_tuned_run_resumes_after_its_init_file_is_gone(celeba, tmp_path):
    """state.pt holds the weights a resumed run continues from: --init is not read again."""
    from smfd.models import MaskNet

    start = tmp_path / "start.safetensors"
    checkpoint.save(start, MaskNet())
    run = dict(task="mask", data=(str(celeba),), out=str(tmp_path / "run"), size=64, init=str(start),
               **{**TINY, "patch": 32, "val_faces": 2})
    assert Trainer(TrainSettings(**{**run, "epochs": 1})).run()["epochs"] == 1
    start.unlink()
    resumed = Trainer(TrainSettings(**run))
    assert resumed.init_note is None and resumed.run()["epochs"] == 2


def test_the_semantic_term_reads_the_restored_face_with_the_shipped_mask_generator(celeba, tmp_path):
    """--semantic: the mask generator, reading the restored face, is scored against the true mask.
    Facial parts erased from a face cost more than the sharp face itself, the gradient reaches the
    restored pixels (not the frozen generator), and a patch is read inside its whole face."""
    import torch.nn.functional as F

    from smfd.models import rgb_to_gray
    from smfd.restorer import MASK_WEIGHTS, WEIGHTS_DIR

    generator = str(WEIGHTS_DIR / MASK_WEIGHTS)
    with pytest.raises(ValueError, match="--semantic .* needs --mask-model"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), semantic=0.1)
    whole = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "whole"), mask_model=generator,
                          semantic=0.1, device="cpu", **{**TINY, "patch": None})
    trainer = Trainer(whole)
    batch = next(iter(trainer.loaders()[3]))  # validation: aligned faces, no augmentation
    sharp = batch["sharp"].clone().requires_grad_(True)
    erased = batch["sharp"].clone()
    centre = erased[:, :, 96:192, 64:192]  # eyes, nose and mouth of an aligned 256x256 face
    centre[:] = centre.mean((2, 3), keepdim=True)
    on_sharp = trainer.semantic_term(batch, sharp)
    assert on_sharp < 0.7 * trainer.semantic_term(batch, erased)
    on_sharp.backward()
    assert sharp.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.mask_model.parameters())

    unknown = dict(batch, mask=torch.full_like(batch["mask"], -1))  # faces without masks: no term
    assert trainer.semantic_term(unknown, batch["sharp"]).item() == 0

    patches = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "patch"),
                                    mask_model=generator, semantic=0.1, device="cpu", **TINY))
    batch = next(iter(patches.loaders()[2]))
    restored = batch["sharp"]
    # the patch is put back at its origin in its whole face, and only the patch is scored
    (y, x), h = batch["origin"][1].tolist(), restored.shape[-1]
    face = batch["blurry_full"][1:2].clone()
    face[:, :, y:y + h, x:x + h] = restored[1]
    with torch.no_grad():
        logits = patches.mask_model(rgb_to_gray(face)).float()[:, :, y:y + h, x:x + h]
    expected = F.cross_entropy(logits, batch["mask"][1:2])
    one = {k: v[1:2] for k, v in batch.items()}
    assert patches.semantic_term(one, restored[1:2]).item() == pytest.approx(expected.item(), rel=2e-2)
    # a face without a mask in the batch is left out, not scored against label -1
    mixed = dict(batch, mask=batch["mask"].clone())
    mixed["mask"][0] = -1
    rest = {k: v[1:] for k, v in batch.items()}
    assert patches.semantic_term(mixed, restored).item() == pytest.approx(
        patches.semantic_term(rest, restored[1:]).item(), rel=1e-4)


def test_the_perceptual_term_compares_the_mask_generator_s_features_of_restored_and_sharp(celeba, tmp_path):
    """--perceptual: the frozen generator's encoder features of the restored patch against those of
    the sharp patch; zero for the sharp patch itself, larger for the blurry one than for a mildly
    smoothed one, the gradient reaches the restored pixels, and a step adds WEIGHT x the term."""
    import torch.nn.functional as F

    from smfd.restorer import MASK_WEIGHTS, WEIGHTS_DIR

    with pytest.raises(ValueError, match="--perceptual .* needs --mask-model"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), perceptual=0.5)
    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path),
                                    mask_model=str(WEIGHTS_DIR / MASK_WEIGHTS), perceptual=0.5, loss="l1",
                                    device="cpu", **TINY))
    batch = next(iter(trainer.loaders()[2]))
    sharp = batch["sharp"].clone().requires_grad_(True)
    on_sharp = trainer.perceptual_term(batch, sharp)
    assert on_sharp.item() == pytest.approx(0, abs=1e-6)
    smoothed = F.avg_pool2d(batch["sharp"], 3, stride=1, padding=1, count_include_pad=False)
    assert 0 < trainer.perceptual_term(batch, smoothed) < trainer.perceptual_term(batch, batch["blurry"])
    trainer.perceptual_term(batch, sharp + 0.05 * torch.randn_like(sharp)).backward()
    assert sharp.grad.abs().sum() > 0 and all(p.grad is None for p in trainer.mask_model.parameters())

    trainer.net.train()
    rng = np.random.default_rng(0)
    out, loss = trainer.forward(batch, trainer.net, 0.0, rng)
    losses = trainer.train_epoch([batch])
    assert set(losses) == {"train_loss", "train_perceptual"}
    assert losses["train_loss"] == pytest.approx(loss.item() + 0.5 * losses["train_perceptual"], rel=1e-3)


def test_the_best_epoch_can_be_kept_by_identity(celeba, tmp_path):
    """--monitor identity: validation also measures the restored faces' descriptor distance to the
    sharp ones (and the same-person share), and the epoch with the lowest distance is kept, not the
    one with the best SSIM."""
    with pytest.raises(ValueError, match="--monitor for deblur must be one of ssim, psnr, identity"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), monitor="dice")
    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "real"), monitor="identity",
                             **TINY)
    real = Trainer(settings)
    real.run()
    rows = _rows(tmp_path / "real" / "log.csv")
    assert all(0 < float(r["id_distance"]) < 2 and 0 <= float(r["same_person"]) <= 1 for r in rows)
    # the figures themselves: each face against itself, then against the next person's
    from smfd.identity import SAME_PERSON, geometry
    from smfd.images import read_image

    faces = [read_image(f) for f in sorted((celeba / "images").glob("*.jpg"))[:3]]
    real.references = None  # made anew from these faces
    assert real.identity_scores(faces, faces) == {"id_distance": pytest.approx(0, abs=1e-6), "same_person": 1.0}
    others = faces[1:] + faces[:1]
    d = [geometry().compare(o, t)[0] for o, t in zip(others, faces)]
    assert real.identity_scores(others, faces) == {"id_distance": pytest.approx(np.mean(d)),
                                                    "same_person": pytest.approx(np.mean(np.array(d) < SAME_PERSON))}

    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "chosen"), monitor="identity",
                             **{**TINY, "epochs": 3})
    trainer = Trainer(settings)
    figures = iter([(0.60, 0.50), (0.62, 0.30), (0.70, 0.40)])  # (ssim, id_distance) per epoch
    trainer.train_epoch = lambda loader: {"train_loss": 1.0}
    trainer.print_references = lambda loader: None  # the figures below are the epochs' alone
    trainer.validate = lambda loader: dict(zip(("ssim", "id_distance"), next(figures)))
    result = trainer.run()
    assert checkpoint.load(tmp_path / "chosen" / "best.safetensors").info["epoch"] == 2  # SSIM would keep 3
    assert result["monitor"] == "id_distance" and result["best"] == pytest.approx(0.30)


def test_a_teacher_s_restorations_are_the_training_targets(celeba, tmp_path):
    """--teacher: a training step learns what the teacher (here the shipped SMFD-UNet) makes of the
    same blurry patch and mask, not the sharp patch; validation still scores against the sharp face.
    A teacher must read the same mask input as the network it teaches, and be of its task."""
    from smfd.losses import restoration_loss
    from smfd.models import one_hot_mask
    from smfd.restorer import DEBLUR_WEIGHTS, WEIGHTS_DIR
    from smfd.runtime import fast_autocast

    shipped = str(WEIGHTS_DIR / DEBLUR_WEIGHTS)
    light = {"decoder": [128, 64, 32], "shuffle_kernel": 1, "residual": True, "match_input_mean": True,
             "soft_mask": True}
    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), config=light,
                                    teacher=shipped, loss="l1", device="cpu", **TINY))
    batch = next(iter(trainer.loaders()[2]))
    blurry = batch["blurry"].contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), fast_autocast(torch.device("cpu")):
        taught = trainer.teacher(blurry, one_hot_mask(batch["mask"].clamp(min=0), 5)).float().clamp(0, 1)
    rng = np.random.default_rng(0)
    trainer.net.train()
    out, loss = trainer.forward(batch, trainer.net, 0.0, rng)
    to_teacher = restoration_loss("l1", out.float(), taught).item()
    to_sharp = restoration_loss("l1", out.float(), batch["sharp"]).item()
    assert abs(to_teacher - to_sharp) > 0.01 * to_sharp  # the two targets tell apart
    assert loss.item() == pytest.approx(to_teacher, rel=1e-3)
    trainer.model.eval()
    out, loss = trainer.forward(batch, trainer.model, 0.0, rng)
    assert loss.item() == pytest.approx(restoration_loss("l1", out.float(), batch["sharp"]).item(), rel=1e-4)

    assert not trainer.teacher.training and not any(p.requires_grad for p in trainer.teacher.parameters())
    with pytest.raises(InputError, match="--teacher .*: differs from the network trained in .*soft_mask"):
        Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "b"),
                              config={**light, "soft_mask": False}, teacher=shipped, **TINY))
    with pytest.raises(InputError, match="holds a 'deblur' network, expected 'mask' or 'smp'"):
        Trainer(TrainSettings(task="mask", data=(str(celeba),), out=str(tmp_path / "c"), teacher=shipped, **TINY))


def test_a_teacher_reads_the_face_before_the_jpeg_stage(celeba, tmp_path):
    """With a JPEG preset and --teacher, the student reads the compressed patch and the teacher the
    same patch before compression: the target is a restoration without the blocks."""
    from smfd.losses import restoration_loss
    from smfd.models import one_hot_mask
    from smfd.restorer import DEBLUR_WEIGHTS, WEIGHTS_DIR
    from smfd.runtime import fast_autocast

    light = {"decoder": [128, 64, 32], "shuffle_kernel": 1, "residual": True, "match_input_mean": True,
             "soft_mask": True}
    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path), config=light,
                                    teacher=str(WEIGHTS_DIR / DEBLUR_WEIGHTS), preset="real-crop", loss="l1",
                                    device="cpu", **TINY))
    train_set, _, train, _ = trainer.loaders()
    assert train_set.options.jpeg_at == "crop" and train_set.uncompressed
    batch = next(iter(train))
    compressed = (batch["blurry"] - batch["blurry_uncompressed"]).abs().flatten(1).mean(1) > 0.5 / 255
    assert compressed.any()  # half the samples are compressed (jpeg_share 0.5)
    mask = one_hot_mask(batch["mask"].clamp(min=0), 5)
    with torch.no_grad(), fast_autocast(torch.device("cpu")):
        before = trainer.teacher(trainer.teacher_input(batch), mask).float().clamp(0, 1)
        after = trainer.teacher(batch["blurry"].contiguous(memory_format=torch.channels_last), mask).float().clamp(0, 1)
    trainer.net.train()
    out, loss = trainer.forward(batch, trainer.net, 0.0, np.random.default_rng(0))
    assert torch.equal(trainer.teacher_input(batch), batch["blurry_uncompressed"])
    assert loss.item() == pytest.approx(restoration_loss("l1", out.float(), before).item(), rel=1e-3)
    assert abs(loss.item() - restoration_loss("l1", out.float(), after).item()) > 1e-4


def test_a_teacher_can_read_the_true_masks_while_its_student_reads_generated_ones(celeba, tmp_path, capsys):
    """--teacher-masks true: the student gets the generator's mask (here without its facial parts),
    the teacher the one-hot true mask of the same face, so the targets are what the teacher makes of
    the true part shapes; a face without a mask gives the teacher the student's mask."""
    from smfd.cli import main
    from smfd.losses import restoration_loss
    from smfd.models import one_hot_mask
    from smfd.restorer import DEBLUR_WEIGHTS, MASK_WEIGHTS, WEIGHTS_DIR
    from smfd.runtime import fast_autocast

    shipped = str(WEIGHTS_DIR / DEBLUR_WEIGHTS)
    student = {"decoder": [128, 64, 32], "shuffle_kernel": 1, "residual": True, "match_input_mean": True,
               "soft_mask": True, "generated_parts": False}
    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), config=student,
                                    mask_source="generated", mask_model=str(WEIGHTS_DIR / MASK_WEIGHTS),
                                    teacher=shipped, teacher_masks="true", loss="l1", device="cpu", **TINY))
    batch = next(iter(trainer.loaders()[2]))
    blurry = batch["blurry"].contiguous(memory_format=torch.channels_last)
    generated = trainer.masks_for(batch, 1.0, np.random.default_rng(0))
    true = one_hot_mask(batch["mask"].clamp(min=0), 5)
    assert not torch.equal(generated, true)
    assert torch.equal(trainer.teacher_mask(batch, generated), true)
    unlabelled = {**batch, "mask": torch.where(torch.arange(len(blurry))[:, None, None] == 0, -1, batch["mask"])}
    mixed = trainer.teacher_mask(unlabelled, generated)
    assert torch.equal(mixed[0], generated[0]) and torch.equal(mixed[1:], true[1:])

    with torch.no_grad(), fast_autocast(torch.device("cpu")):
        from_truth = trainer.teacher(blurry, true).float().clamp(0, 1)
        from_generated = trainer.teacher(blurry, generated).float().clamp(0, 1)
    trainer.net.train()
    out, loss = trainer.forward(batch, trainer.net, 1.0, np.random.default_rng(0))
    assert loss.item() == pytest.approx(restoration_loss("l1", out.float(), from_truth).item(), rel=1e-3)
    assert abs(loss.item() - restoration_loss("l1", out.float(), from_generated).item()) > 1e-3 * loss.item()

    assert main(["train", "deblur", str(celeba), "--out", str(tmp_path / "b"), "--teacher-masks", "true"]) == 2
    assert "--teacher-masks true needs --teacher" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_a_teacher_s_probabilities_are_the_mask_generator_s_training_targets(celeba, tmp_path):
    """--teacher for the mask task: a training step scores the student's groups against the
    teacher's probabilities for the same face (the loss of --loss, Dice and cross-entropy taking
    probabilities), validation against the true mask."""
    from smfd.losses import segmentation_loss
    from smfd.models import mask_input
    from smfd.restorer import MASK_WEIGHTS, WEIGHTS_DIR
    from smfd.runtime import fast_autocast

    shipped = str(WEIGHTS_DIR / MASK_WEIGHTS)  # taught by itself, a student is far closer to its teacher than to the truth
    config = {k: v for k, v in checkpoint.read_metadata(shipped)["config"].items() if k != "kind"}
    trainer = Trainer(TrainSettings(task="mask", data=(str(celeba),), out=str(tmp_path), init=shipped, config=config,
                                    teacher=shipped, loss="dice+ce", device="cpu", **{**TINY, "patch": None}))
    batch = next(iter(trainer.loaders()[2]))
    blurry = batch["blurry"].contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), fast_autocast(torch.device("cpu")):
        taught = trainer.teacher(mask_input(trainer.teacher.config, blurry)).float().softmax(1)
    rng = np.random.default_rng(0)
    trainer.net.train()
    logits, loss = trainer.forward(batch, trainer.net, 0.0, rng)
    to_teacher = segmentation_loss("dice+ce", logits.float(), taught).item()
    to_labels = segmentation_loss("dice+ce", logits.float(), batch["mask"]).item()
    assert to_teacher < 0.95 * to_labels, (to_teacher, to_labels)
    assert loss.item() == pytest.approx(to_teacher, rel=1e-3)
    trainer.model.eval()
    logits, loss = trainer.forward(batch, trainer.model, 0.0, rng)
    assert loss.item() == pytest.approx(segmentation_loss("dice+ce", logits.float(), batch["mask"]).item(), rel=1e-4)


def test_parts_weight_makes_the_true_facial_parts_count_more(celeba, tmp_path):
    """--parts-weight W: in a training step the L1 error of each pixel that the true mask calls a
    facial part counts 1 + W times (normalised to the weights' mean); W 0 is the plain loss. It
    weighs SMFD-UNet's loss only, and needs faces with masks."""
    from smfd.labels import GROUPS
    from smfd.losses import restoration_loss

    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), loss="l1",
                                    parts_weight=4.0, device="cpu", **TINY))
    batch = next(iter(trainer.loaders()[2]))
    parts = (batch["mask"] == GROUPS.index("facial parts"))[:, None].float()
    assert 0 < parts.mean() < 0.5  # the validation patches hold some facial parts, not only them
    trainer.model.eval()
    out, loss = trainer.forward(batch, trainer.model, 0.0, np.random.default_rng(0))
    error = (out.float() - batch["sharp"]).abs()
    weight = 1 + 4 * parts
    assert torch.equal(trainer.pixel_weight(batch).cpu(), weight)
    assert loss.item() == pytest.approx(((error * weight).mean() / weight.mean()).item(), rel=1e-4)
    # an error only on the facial parts costs (1 + W) / mean weight times what it costs unweighted
    sharp = batch["sharp"]
    on_parts = sharp + 0.1 * parts
    assert restoration_loss("l1", on_parts, sharp, weight).item() == pytest.approx(
        5 / weight.mean().item() * restoration_loss("l1", on_parts, sharp).item(), rel=1e-4)
    trainer.s.parts_weight = 0.0
    _, plain = trainer.forward(batch, trainer.model, 0.0, np.random.default_rng(0))
    assert plain.item() == pytest.approx(error.mean().item(), rel=1e-4)

    with pytest.raises(ValueError, match="--parts-weight weighs SMFD-UNet's"):
        TrainSettings(task="mask", data=(str(celeba),), out=str(tmp_path / "b"), parts_weight=1.0, **TINY)
    with pytest.raises(ValueError, match=r"--parts-weight must be in \[0, 100\], got -1"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "c"), parts_weight=-1, **TINY)


def test_ssim_weight_sets_the_share_of_ssim_in_the_l1_ssim_loss(celeba, tmp_path):
    """--ssim-weight W: a training step's l1+ssim loss is L1 + W x (1 - SSIM) (default 0.2); it
    weighs only that loss, and refuses values no run can use."""
    from smfd.losses import SSIM_WEIGHT, ssim

    trainer = Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), loss="l1+ssim",
                                    ssim_weight=0.6, device="cpu", **TINY))
    batch = next(iter(trainer.loaders()[2]))
    trainer.model.eval()
    out, loss = trainer.forward(batch, trainer.model, 0.0, np.random.default_rng(0))
    l1 = (out.float() - batch["sharp"]).abs().mean().item()
    dissimilarity = (1 - ssim(out.float(), batch["sharp"])).mean().item()
    assert dissimilarity > 0.05  # an untrained network: SSIM counts visibly
    assert loss.item() == pytest.approx(l1 + 0.6 * dissimilarity, rel=1e-4)
    trainer.s.ssim_weight = SSIM_WEIGHT
    _, default = trainer.forward(batch, trainer.model, 0.0, np.random.default_rng(0))
    assert default.item() == pytest.approx(l1 + 0.2 * dissimilarity, rel=1e-4)

    for weight in (1.0, SSIM_WEIGHT):  # given at all, it needs the loss it weighs
        with pytest.raises(ValueError, match="--ssim-weight weighs the SSIM of --loss l1\\+ssim"):
            TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "b"), loss="l1", ssim_weight=weight,
                          **TINY)
    # a run saved before the option existed resumes with the weight it was trained with
    import dataclasses

    from smfd.train import settings_changes

    saved = {**dataclasses.asdict(trainer.s), "loss": "l1+ssim"}
    saved.pop("ssim_weight")
    old, command = TrainSettings(**saved), TrainSettings(**{**saved, "ssim_weight": None})
    assert old.ssim_weight == SSIM_WEIGHT and settings_changes(old, command) == []
    assert settings_changes(old, TrainSettings(**{**saved, "ssim_weight": 0.6})) == [
        "--ssim-weight: run folder 0.2, command 0.6"]
    with pytest.raises(ValueError, match=r"--ssim-weight must be in \[0, 10\], got -1"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "c"), loss="l1+ssim", ssim_weight=-1,
                      **TINY)


def test_a_deblur_run_first_scores_the_blurry_inputs_and_its_init_weights(celeba, tmp_path, capsys):
    """Before the first epoch a fresh deblur run prints the validation figures of the blurry faces
    and (with --init) of the initial weights, scored as the epochs are; a resumed run does not."""
    from smfd import metrics
    from smfd.images import to_uint8
    from smfd.restorer import DEBLUR_WEIGHTS, WEIGHTS_DIR

    light = {"decoder": [128, 64, 32], "shuffle_kernel": 1, "residual": True, "match_input_mean": True,
             "soft_mask": True, "generated_parts": False}
    settings = dict(task="deblur", data=(str(celeba),), out=str(tmp_path / "run"), config=light, device="cpu",
                    init=str(WEIGHTS_DIR / DEBLUR_WEIGHTS), **{**TINY, "epochs": 1})
    trainer = Trainer(TrainSettings(**settings))
    trainer.run()
    printed = capsys.readouterr().out
    found = dict(re.findall(r"validation, (blurry input|--init weights before training): psnr ([\d.]+)", printed))
    val = trainer.loaders()[3]
    blurry_psnr = np.mean([metrics.psnr(*(to_uint8(t.numpy().transpose(1, 2, 0)) for t in pair))
                           for batch in val for pair in zip(batch["blurry"], batch["sharp"])])
    assert float(found["blurry input"]) == pytest.approx(blurry_psnr, abs=1e-3)
    assert float(found["--init weights before training"]) > float(found["blurry input"]) + 0.5

    Trainer(TrainSettings(**{**settings, "epochs": 2})).run()
    assert "validation, blurry input" not in capsys.readouterr().out


def test_a_loss_or_validation_that_is_not_a_number_stops_with_one_line(celeba, tmp_path, monkeypatch):
    """A nan loss stops the run before a step spreads it into every weight; a run none of whose
    validations gave a number says so, not 'weights in best.safetensors' of a file never written."""
    settings = TrainSettings(task="deblur", data=(str(celeba),), out=str(tmp_path / "a"), size=64,
                             **{**TINY, "epochs": 1, "patch": 32, "val_faces": 2})
    real = Trainer.forward
    monkeypatch.setattr(Trainer, "forward", lambda *a: (lambda out, loss: (out, loss * float("nan")))(*real(*a)))
    with pytest.raises(InputError, match=r"^epoch 1: the training loss is nan after 0 samples; lower --lr"):
        Trainer(settings).run()
    assert not (tmp_path / "a").exists()  # a run that fails in its first epoch leaves no folder behind
    monkeypatch.setattr(Trainer, "forward", real)
    monkeypatch.setattr(Trainer, "validate", lambda self, loader, blurry_input=False: {"psnr": float("nan"),
                                                                                      "ssim": float("nan")})
    trainer = Trainer(dataclasses.replace(settings, out=str(tmp_path / "b")))
    with pytest.raises(InputError, match="none of the 1 validations gave a number for ssim"):
        trainer.run()
    assert not (tmp_path / "b" / "best.safetensors").exists()


def test_cross_validation_names_a_fold_without_faces_before_the_first_fold_trains(celeba, tmp_path):
    from smfd.data import open_dataset, select
    from smfd.train import cross_validate

    records = [r for r in open_dataset(celeba) if r.has_mask][:12]
    k = next(k for k in range(3, 12) if select(records, "val", k, 0) and select(records, "train", k, 0)
             and not all(select(records, "val", k, f) for f in range(k)))
    data = _link_faces(records, tmp_path / "faces")
    settings = TrainSettings(task="deblur", data=(str(data),), out=str(tmp_path / "cv"), k=k, size=64,
                             **{**TINY, "epochs": 1, "patch": 32, "batch": 1, "samples_per_epoch": 1})
    with pytest.raises(InputError, match=r"^too few faces: \d+ for training, 0 for validation$"):
        cross_validate(settings)
    assert not (tmp_path / "cv").exists()  # no fold trained before the empty one was found


def _link_faces(records, data: Path) -> Path:
    """A merged-layout dataset folder of symbolic links to these faces and their masks."""
    for sub, files in (("images", [r.image for r in records]), ("masks", [r.mask for r in records])):
        (data / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            (data / sub / f.name).symlink_to(f)
    return data


TINY_RUN = dict(batch=2, size=32, samples_per_epoch=2, workers=0)  # a tiny run, and as `smfd train` options
TINY_ARGS = ["--batch", "2", "--size", "32", "--samples-per-epoch", "2", "--workers", "0"]


def _saved_run(**settings) -> Trainer:
    """A run folder with the state.pt that `smfd train` saves (before any epoch, for speed)."""
    trainer = Trainer(TrainSettings(**settings, **TINY_RUN))
    trainer.out.mkdir()
    trainer.save_state()
    return trainer


def test_a_resume_on_other_faces_is_refused_and_says_which(celeba, tmp_path, capsys):
    """Scores of epochs validated on other faces do not compare: faces added to the dataset folder
    stop the run's resume (a state.pt written before the faces were recorded resumes as before)."""
    from smfd.cli import main
    from smfd.data import open_dataset, select

    records = open_dataset(celeba)[:12]
    data, out = _link_faces(records[:8], tmp_path / "faces"), tmp_path / "run"  # 6 training, 1 validation
    _saved_run(task="mask", data=(str(data),), out=str(out))
    _link_faces(records[8:], data)  # 1 training, 2 validation and 1 test face more
    command = ["train", "mask", str(data), "--out", str(out), *TINY_ARGS, "--epochs", "2"]
    assert main(command) == 2
    assert capsys.readouterr().err.strip() == (f"smfd: error: {out / 'state.pt'}: the training faces differ from "
                                               "the run's (6 then, 7 now: the dataset changed, or what smfd train "
                                               "leaves out, such as copies of held-out faces); choose another --out")
    added = next(r for r in select(records, "train") if r not in records[:8])
    (data / "images" / added.image.name).unlink()  # training as before, validation not
    assert main(command) == 2
    assert "the validation faces differ from the run's (1 then, 3 now: the dataset changed" in capsys.readouterr().err
    state = torch.load(out / "state.pt", weights_only=True)
    del state["inputs"]
    torch.save(state, out / "state.pt")
    assert Trainer(TrainSettings(task="mask", data=(str(data),), out=str(out), **TINY_RUN)).load_state()  # an older run


def test_a_resume_with_a_changed_mask_generator_is_refused(celeba, tmp_path, capsys):
    """--mask-model is checked by its content, not only its path."""
    from smfd.cli import main
    from smfd.data import open_dataset
    from smfd.models import MaskNet

    torch.manual_seed(0)
    generator = checkpoint.save(tmp_path / "mask.safetensors", MaskNet())
    data, out = _link_faces(open_dataset(celeba)[:8], tmp_path / "faces"), tmp_path / "run"
    _saved_run(task="deblur", data=(str(data),), out=str(out), mask_source="generated", mask_model=str(generator))
    checkpoint.save(generator, MaskNet())  # other random weights at the same path
    assert main(["train", "deblur", str(data), "--out", str(out), "--mask-source", "generated",
                 "--mask-model", str(generator), *TINY_ARGS, "--epochs", "2"]) == 2
    assert capsys.readouterr().err.strip() == (f"smfd: error: {out / 'state.pt'}: --mask-model {generator}: its "
                                               "content changed since the run began (another sha256); restore it "
                                               "or choose another --out")


def test_mask_options_of_a_network_without_a_mask_are_refused(celeba, tmp_path, capsys):
    """--ablation no-mask (use_mask=false) reads no mask: a mask source or teacher masks would be
    ignored. The generator stays allowed for --semantic and --perceptual, which read it; a run saved
    with such an option before it was refused resumes under the command without it."""
    from smfd.cli import main

    out = tmp_path / "run"
    for extra, says in (
            (["--ablation", "no-mask", "--mask-source", "generated", "--mask-model", "m.safetensors"],
             "--mask-source generated chooses SMFD-UNet's mask input, and this network reads no mask"),
            (["--set", "use_mask=false", "--teacher", "t.safetensors", "--teacher-masks", "true"],
             "--teacher-masks true chooses SMFD-UNet's mask input, and this network reads no mask")):
        assert main(["train", "deblur", str(celeba), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
        assert not out.exists()
    no_mask = {"use_mask": False, "upsample": "plain", "post_process": False}
    TrainSettings(task="deblur", data=(str(celeba),), out=str(out), config=no_mask, mask_model="m.safetensors",
                  semantic=0.1)
    settings = dict(task="deblur", data=(str(celeba),), out=str(out), size=64, config=no_mask, **TINY)
    old = Trainer(TrainSettings(**settings))
    old.s.mask_source, old.s.mask_model = "mix", "old_generator.safetensors"
    old.out.mkdir()
    old.save_state()
    assert Trainer(TrainSettings(**settings)).load_state()


def test_a_seed_beyond_torch_s_range_is_refused_up_front(celeba, tmp_path, capsys):
    from smfd.cli import main
    from smfd.train import SEED_MAX

    out = tmp_path / "run"
    assert main(["train", "deblur", "no-such-data", "--out", str(out), "--seed", str(10**23)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--seed: must be at most {SEED_MAX}" in err, err
    with pytest.raises(ValueError, match=f"^--seed must be at most {SEED_MAX}"):
        TrainSettings(task="deblur", data=(str(celeba),), out=str(out), seed=SEED_MAX + 1)
    assert Trainer(TrainSettings(task="deblur", data=(str(celeba),), out=str(out), seed=SEED_MAX, **TINY))
    assert not out.exists()


def test_a_size_above_the_source_size_is_refused_not_enlarged(tmp_path, capsys):
    """Faces are loaded and degraded at 512x512: a larger --size would train on enlarged faces."""
    from smfd.cli import main

    assert main(["train", "deblur", "no-such-data", "--out", str(tmp_path / "run"), "--size", "1024"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("--size must be a multiple of 32 between 32 and 512 (the faces are "
                                           "degraded at 512x512; a larger size would only enlarge them), got 1024") in err
    TrainSettings(task="deblur", data=("unused",), out=str(tmp_path), size=512)


def test_copies_of_test_faces_in_another_dataset_are_left_out(shared_data, tmp_path, capsys, monkeypatch):
    """Each dataset is split by its own ids; the shared FFHQ sample holds re-encoded copies of
    CelebA-HQ faces under other ids, two of them of test faces that its own split puts in training
    and validation (the shipped SMFD-UNet was trained with one of them), two of validation faces
    that it puts in training, one of them mirrored. All are left out, named, also when FFHQ is trained on alone: the
    benchmark's test faces are held out of every run."""
    from smfd import data
    from smfd.images import read_image
    from smfd.restorer import MASK_WEIGHTS, WEIGHTS_DIR
    from smfd.train import training_records

    monkeypatch.setenv("SMFD_SHARED_DATA", str(shared_data))  # the benchmark's faces, wherever the checkout is
    celeba, ffhq = shared_data / "celebamask_mini", shared_data / "ffhq_mini"
    copies = {"00240": "b33f1c612da54ab4a3e7fdb438ebb6e8", "00144": "b79692ce50b14035b8a7a8ab2d261bbc"}
    twins = {"00241": "41e24362ccd84709b40007bcbb43fe4a", "00324": "88b87d143d1647b98dd84ea8e7a0b706"}
    for copy, original in (*copies.items(), *twins.items()):  # the same photo, re-encoded (00324 mirrored)
        a, b = (read_image(path).astype(int) for path in (ffhq / f"{copy}.jpg", celeba / "images" / f"{original}.jpg"))
        assert np.abs((a[:, ::-1] if copy == "00324" else a) - b).mean() < 3
    assert all(data.split_of(original) == "test" for original in copies.values())
    assert all(data.split_of(original) == "trainval" and data.fold_of(original) == 0  # validation
               for original in twins.values())
    alone = {r.id for part in ("train", "val") for r in data.select(data.open_dataset(ffhq), part)}
    assert set(copies) <= alone and set(twins) <= {r.id for r in data.select(data.open_dataset(ffhq), "train")}
    settings = TrainSettings(task="deblur", data=(str(celeba), str(ffhq)), out=str(tmp_path), mask_source="generated",
                             mask_model=str(WEIGHTS_DIR / MASK_WEIGHTS))
    train, val = training_records(settings)
    assert not (set(copies) | set(twins)) & {r.id for r in train + val}
    assert set(twins.values()) <= {r.id for r in val}
    assert len(train) + len(val) == len(alone) + sum(1 for part in ("train", "val")
                                                     for _ in data.select(data.open_dataset(celeba), part)) - 4
    said = capsys.readouterr().out
    assert all(f"{copy} (= {original})" in said for copy, original in (*copies.items(), *twins.items()))
    train, val = training_records(dataclasses.replace(settings, data=(str(ffhq),)))
    assert not set(copies) & {r.id for r in train + val} and len(train) + len(val) == len(alone) - 2
    said = capsys.readouterr().out
    assert all(f"{copy} (= {original})" in said for copy, original in copies.items())
