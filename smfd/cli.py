"""The ``smfd`` command. The heavy libraries (torch, gradio, the baselines) are imported only by
the subcommand that runs; building the parser reads only the degradation options' defaults.

Exit status: 0 on success, 1 when some inputs of a batch failed (the others are written),
2 for a bad command line or unusable input. Errors are one line, without a traceback
(set SMFD_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

from . import __version__
from .batch import BatchErrors, note, report
from .errors import InputError, first_line, message_of

DEFAULTS_NOTE = "defaults are the thesis' values"


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one line naming the option, like every other error of smfd; options
    may stand between positionals (`smfd blur IN --seed 3 OUT`), where plain argparse gives both of
    blur's optional positionals to the first word and refuses OUT."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        nested = any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._get_positional_actions())
        if "--" in args and not nested:
            end = args.index("--")
            if not any(a.startswith("-") for a in args[end + 1:]):
                args = args[:end] + args[end + 1:]  # `--` changes nothing here: intermix without it
            else:  # a file named -x: intermixed parsing would mistake it for an option
                return super().parse_known_args(args, namespace)
        if self._intermixing or nested:  # argparse cannot intermix a parser that has subcommands
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str):
        self.exit(2, f"smfd: error: {message} (see '{self.prog} --help')\n")


def script_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a script in scripts/: its docstring as the help, and mistakes as one line, as
    the smfd commands do."""
    return _Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_device(parser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the networks run (default auto: the GPU when there is one)")


def int_from(least: int, most: int | None = None):
    """argparse type: an integer of at least ``least`` (and at most ``most``); argparse names the
    option on refusal."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
        return value

    return parse


def number_in(low: float, high: float, low_open: bool = False):
    """argparse type: a finite number in [low, high] ((low, high] with ``low_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"must lie in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value

    return parse


def add_face_set_options(parser: argparse.ArgumentParser, engine: bool = True) -> None:
    """The options of the scripts that score a model on the benchmark's faces (SPEC section 2):
    --data, --weights, --split, --faces, --seed, --device and (``engine``) --engine; :func:`face_set`
    reads them."""
    from .engines import ENGINES
    from .paths import benchmark_data

    parser.add_argument("--data", default=str(benchmark_data()),
                        help="CelebAMask-HQ-layout faces with masks (default: celebamask_mini of the shared data)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the held-out test faces, or the training runs' validation faces (fold 0)")
    parser.add_argument("--faces", type=int_from(1), default=None, help="use only the first N faces")
    parser.add_argument("--seed", type=int_from(0), default=0, help="seed of the degradations (default 0)")
    _add_device(parser)
    if engine:
        parser.add_argument("--engine", choices=ENGINES, default="auto", help="what runs the networks (default auto)")


def face_set(args: argparse.Namespace) -> list:
    """The faces with a mask of ``args.split`` of ``args.data`` (the first ``args.faces``); a folder
    without any is an InputError naming it."""
    from . import data

    records = [r for r in data.select(data.open_dataset(args.data), args.split) if r.has_mask]
    if not records:
        raise InputError(f"{args.data}: no {args.split} faces with a mask")
    records = records[: args.faces] if args.faces else records
    data.check_files(records)  # a bad file named before the first face is restored
    return records


# ---------------------------------------------------------------- blur

def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    from .degrade import DIRECTIONS, SEQUENCES, PipelineOptions

    d = PipelineOptions()

    def shown(values) -> str:
        return " ".join(map(str, values))

    g = p.add_argument_group(f"degradation pipeline ({DEFAULTS_NOTE})")
    g.add_argument("--layers", type=int_from(1), nargs="+", default=list(d.layers), metavar="N",
                   help=f"allowed numbers of blur layers (default: {shown(d.layers)})")
    g.add_argument("--sequences", nargs="+", default=list(d.sequences), choices=list(SEQUENCES),
                   metavar="SEQ", help="allowed blur sequences per layer, quoted (a bare > redirects "
                                       f"into a file): {', '.join(repr(q) for q in SEQUENCES)} "
                                       f"(default: {' '.join(repr(q) for q in d.sequences)})")
    g.add_argument("--gaussian-sizes", type=int, nargs="+", default=list(d.gaussian_sizes), metavar="K",
                   help=f"odd Gaussian kernel sizes (default: {shown(d.gaussian_sizes)})")
    g.add_argument("--motion-sizes", type=int, nargs="+", default=list(d.motion_sizes), metavar="K",
                   help=f"odd motion kernel sizes (default: {shown(d.motion_sizes)})")
    g.add_argument("--directions", nargs="+", default=list(d.directions), choices=list(DIRECTIONS),
                   metavar="DIR", help=f"motion directions: {', '.join(DIRECTIONS)} "
                                       f"(default: {shown(d.directions)})")
    g.add_argument("--scale-range", type=float, nargs=2, default=list(d.scale_range), metavar=("LO", "HI"),
                   help=f"down-scaling factor range (default: {shown(d.scale_range)})")
    g.add_argument("--noise-range", type=float, nargs=2, default=list(d.noise_range), metavar=("LO", "HI"),
                   help=f"Gaussian noise sigma range on the 0..255 scale (default: {shown(d.noise_range)})")
    g.add_argument("--no-blur", action="store_true", help="switch the blur stage off")
    g.add_argument("--no-rescale", action="store_true", help="switch the down/up-scaling stage off")
    g.add_argument("--no-noise", action="store_true", help="switch the noise stage off")
    g.add_argument("--jpeg", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="add JPEG compression after the noise, quality drawn from LO..HI (1..100); "
                        f"off in the thesis' pipeline (the 'real' training preset: {shown(d.jpeg_range)})")
    g.add_argument("--jpeg-share", type=number_in(0, 1, low_open=True), default=d.jpeg_share, metavar="P",
                   help="with --jpeg: the share of images compressed, 0 < P <= 1 (default: all)")


# The option that sets each pipeline field, for errors that name what the user typed.
PIPELINE_OPTION = {"layers": "--layers", "sequences": "--sequences", "gaussian_sizes": "--gaussian-sizes",
                   "motion_sizes": "--motion-sizes", "directions": "--directions", "scale_range": "--scale-range",
                   "noise_range": "--noise-range", "jpeg_range": "--jpeg", "jpeg_share": "--jpeg-share"}


# The options of each stage that a --no-STAGE switch turns off: given with it, they would be ignored.
STAGE_OPTIONS = {"blur": ("layers", "sequences", "gaussian_sizes", "motion_sizes", "directions"),
                 "rescale": ("scale_range",), "noise": ("noise_range",)}


def _check_stages(args) -> None:
    """Refuse options of a stage switched off (they would be ignored) and every stage off (a copy)."""
    from .degrade import PipelineOptions

    d = PipelineOptions()
    for stage, fields in STAGE_OPTIONS.items():
        given = [PIPELINE_OPTION[f] for f in fields if tuple(getattr(args, f)) != getattr(d, f)]
        if getattr(args, f"no_{stage}") and given:
            raise InputError(f"{' and '.join(given)} set the {stage} stage, which --no-{stage} switches off")
    if args.no_blur and args.no_rescale and args.no_noise and args.jpeg is None:
        raise InputError("--no-blur, --no-rescale and --no-noise without --jpeg leave every image as it is: "
                         "nothing would be degraded")


def _pipeline_options(args):
    from .degrade import PipelineOptions

    try:
        return PipelineOptions(
            layers=args.layers, sequences=args.sequences, gaussian_sizes=args.gaussian_sizes,
            motion_sizes=args.motion_sizes, directions=args.directions, scale_range=args.scale_range,
            noise_range=args.noise_range, blur=not args.no_blur, rescale=not args.no_rescale,
            noise=not args.no_noise, jpeg=args.jpeg is not None,
            jpeg_range=args.jpeg if args.jpeg is not None else PipelineOptions.jpeg_range,
            jpeg_share=args.jpeg_share)
    except ValueError as exc:
        text = str(exc).removeprefix("invalid pipeline option: ")
        field = text.split(" ", 1)[0]
        raise InputError(PIPELINE_OPTION[field] + text[len(field):] if field in PIPELINE_OPTION
                         else str(exc)) from None


def cmd_blur(args) -> None:
    from .degrade import PipelineOptions, count_scenarios

    options = _pipeline_options(args)
    if args.jpeg is None and args.jpeg_share != PipelineOptions.jpeg_share:
        raise InputError("--jpeg-share needs --jpeg (the share of images compressed)")
    if args.count and (args.input or args.recipe or args.seed is not None):
        raise InputError("--count prints the number of scenarios of the pipeline options: it takes no IN, OUT, "
                         "--seed or --recipe")
    if args.recipe and (args.seed is not None or options != PipelineOptions()):  # would be ignored
        raise InputError("--recipe replays its own draws: --seed and the pipeline options do not go with it")
    _check_stages(args)
    if args.count:
        c = count_scenarios(options)
        print(f"{c.total:,} scenarios = {c.blur:,} blur combinations ({c.per_layer:,} per layer) "
              f"x {c.scales} scales x {c.noise_levels} noise levels"
              + (f" x {c.jpeg_qualities} JPEG settings" if c.jpeg_qualities > 1 else ""))
        return
    if args.input is None or args.output is None:
        raise InputError("blur needs IN and OUT (or --count)")
    from .blur_files import blur_files

    blur_files(args.input, args.output, options, args.seed or 0, args.recipe, args.overwrite)


# ---------------------------------------------------------------- train

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the mask generator or SMFD-UNet",
                       description="Train a network on one or more dataset folders (merged, official "
                                   "CelebAMask-HQ or plain image folder layout). Running the same "
                                   "command again resumes from OUT/state.pt (only --epochs, --workers and "
                                   "--device may change; a run that resumes does not read --init again).")
    p.add_argument("task", choices=["mask", "deblur"], help="mask generator or SMFD-UNet")
    p.add_argument("data", nargs="+", help="dataset folders")
    p.add_argument("--out", required=True, help="run folder (state.pt, best.safetensors, log.csv)")
    p.add_argument("--epochs", type=int_from(1), default=50, help="epochs at most (default 50)")
    p.add_argument("--batch", type=int_from(1), default=16, help="faces per training step (default 16)")
    p.add_argument("--lr", type=number_in(0, 1, low_open=True), default=1e-3,
                   help="Adam's learning rate at the start (default 0.001)")
    p.add_argument("--lr-patience", type=int_from(1), default=5, help="epochs without improvement before lr x 0.2 (default 5)")
    p.add_argument("--early-stop", type=int_from(1), default=10, help="epochs without improvement before stopping (default 10)")
    p.add_argument("--size", type=int_from(32), default=256,
                   help="working size of the faces, a multiple of 32 up to 512, the size they are degraded "
                        "at (default 256)")
    p.add_argument("--patch", type=int_from(32), default=None,
                   help="train on random PATCH x PATCH crops, a multiple of 32 up to --size (default: whole faces)")
    p.add_argument("--samples-per-epoch", type=int_from(1), default=None,
                   help="training samples between two validations, a multiple of --batch (default: one pass over the faces)")
    p.add_argument("--val-faces", type=int_from(1), default=None,
                   help="cap on validation faces (default: the whole validation fold)")
    p.add_argument("--workers", type=int_from(0), default=2, help="data-loading processes (default 2; 0: in the main process)")
    p.add_argument("--seed", type=int_from(0, 2**64 - 1), default=0,
                   help="seed of the split-independent randomness: weights, degradations, crops (default 0)")
    p.add_argument("--folds", type=int_from(2), default=5,
                   help="k of the k-fold split (validation = one fold; default 5)")
    p.add_argument("--fold", type=int_from(0), default=None, help="which fold validates (default 0; "
                   "--cross-validate trains them all)")
    p.add_argument("--cross-validate", action="store_true", help="train every fold into OUT/fold<i>")
    p.add_argument("--loss", default=None, help="mask: dice (default), dice+ce; deblur: mse (default), l1, l1+ssim")
    p.add_argument("--mask-source", choices=["gt", "generated", "mix"], default="gt",
                   help="deblur: ground-truth masks, the mask generator's, or half of each")
    p.add_argument("--mask-model", default=None,
                   help="mask-generator checkpoint for generated/mix masks, --semantic and --perceptual")
    p.add_argument("--semantic", type=number_in(0, 10), default=0.0, metavar="WEIGHT",
                   help="deblur: add WEIGHT x the cross-entropy of the --mask-model generator, reading the "
                        "restored face, against the true mask (faces with masks only), so that facial parts "
                        "drawn where the face has none cost in training (0 to 10; default 0: off)")
    p.add_argument("--perceptual", type=number_in(0, 10), default=0.0, metavar="WEIGHT",
                   help="deblur: add WEIGHT x the distance between the --mask-model generator's encoder "
                        "features of the restored and the sharp face, a face-trained view of the facial parts "
                        "(0 to 10; default 0: off)")
    p.add_argument("--parts-weight", type=number_in(0, 100), default=0.0, metavar="W",
                   help="deblur: the error of a pixel that the true mask calls a facial part (eye, brow, nose, "
                        "mouth, ear) counts 1 + W times in the L1/MSE (faces with masks; default 0: off)")
    p.add_argument("--ssim-weight", type=number_in(0, 10), default=None, metavar="W",
                   help="deblur with --loss l1+ssim: the loss is L1 + W x (1 - SSIM) (default 0.2)")
    p.add_argument("--monitor", default=None, choices=["dice", "ssim", "psnr", "identity"],
                   help="validation figure that keeps the best epoch and lowers the learning rate: mask dice "
                        "(default); deblur ssim (default), psnr, or identity (mean dlib descriptor distance "
                        "of the restored to the sharp validation faces, lower is better)")
    p.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                   help="learn what this network of the same task makes of the same blurry faces instead of "
                        "the sharp faces or true masks (distillation, e.g. of a shipped network into one with a "
                        "lighter decoder): deblur, the restorations of an SMFD-UNet that reads the same image and "
                        "mask; mask, the probabilities of a mask generator of the same groups; validation still "
                        "scores against the sharp faces and true masks")
    p.add_argument("--teacher-masks", choices=["same", "true"], default="same",
                   help="deblur with --teacher: the masks the teacher reads, the student's (default) or the "
                        "ground-truth ones (faces without a mask: the student's), so that a student fed "
                        "generated masks learns what the teacher makes of the true facial parts")
    p.add_argument("--ablation", default=None, help="deblur: a thesis table 4.3 variant: "
                   "no-mask, plain-upsampling, attention-transpose, attention-pixelshuffle, full")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config field, e.g. --set residual=true or --set arch=unet (JSON values; "
                        "a bare word is text)")
    p.add_argument("--init", default=None, help="start from these weights (fine-tuning): a network of the "
                   "same task and configuration (see --set), or of the same task and another configuration "
                   "with --init-partial")
    p.add_argument("--init-partial", action="store_true",
                   help="with --init: take only the tensors whose name and shape fit, e.g. the encoders of "
                        "the shipped network for one with a lighter decoder (--set decoder=[128,64,32])")
    p.add_argument("--no-augment", action="store_true",
                   help="train without the thesis' augmentation (flips, rotations up to 30 degrees, crops, "
                        "brightness and contrast)")
    from .degrade import PRESETS

    p.add_argument("--preset", default="thesis", choices=list(PRESETS),
                   help="degradation of the training samples: the thesis' pipeline, or the thesis' plus JPEG "
                        "compression on half the samples, of the 512x512 source ('real') or of the 256x256 "
                        "face ('real-crop', as a compressed photo's face reaches the network); validation "
                        "always uses the thesis' pipeline. With --teacher, the teacher reads the face before "
                        "the compression")
    _add_device(p)
    p.set_defaults(func=cmd_train)


def config_overrides(items: list[str], option: str = "--set") -> dict:
    """``--set KEY=VALUE`` items as a dict of model config overrides (values parsed as JSON, a bare
    word as text, e.g. ``arch=unet``; the fields and their values' types are checked where the
    config is made, :func:`smfd.models.with_overrides`)."""
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            if not re.fullmatch(r"[A-Za-z_][\w.-]*", value):
                raise InputError(f"{option} {item}: VALUE must be JSON or a word, e.g. true, 3, 0.5, [1,2] or "
                                 "unet") from None
            config[key] = value
    return config


def cmd_train(args) -> None:
    from .batch import check_folder
    from .models import ABLATIONS
    from .train import TrainSettings, cross_validate, train

    check_folder(args.out, "--out")
    if args.cross_validate and args.fold is not None:
        raise InputError("--fold does not go with --cross-validate, which trains every fold")
    config = {}
    if args.ablation:
        if args.task != "deblur" or args.ablation not in ABLATIONS:
            raise InputError(f"--ablation takes a deblur variant: {', '.join(ABLATIONS)}")
        config.update(ABLATIONS[args.ablation])
    overrides = config_overrides(args.set)
    clash = [k for k in overrides if k in config and overrides[k] != config[k]]
    if clash:
        raise InputError(f"--set {clash[0]}={json.dumps(overrides[clash[0]])} contradicts --ablation {args.ablation} "
                         f"({clash[0]}={json.dumps(config[clash[0]])})")
    config.update(overrides)
    try:
        settings = TrainSettings(
            task=args.task, data=tuple(args.data), out=args.out, epochs=args.epochs, batch=args.batch,
            lr=args.lr, lr_patience=args.lr_patience, early_stop=args.early_stop, size=args.size,
            patch=args.patch, samples_per_epoch=args.samples_per_epoch, val_faces=args.val_faces,
            workers=args.workers, seed=args.seed, k=args.folds, fold=args.fold or 0, loss=args.loss,
            mask_source=args.mask_source, mask_model=args.mask_model, config=config, init=args.init,
            init_partial=args.init_partial, device=args.device, augment=not args.no_augment, preset=args.preset,
            semantic=args.semantic, perceptual=args.perceptual, parts_weight=args.parts_weight,
            ssim_weight=args.ssim_weight, monitor=args.monitor,
            teacher=args.teacher,
            teacher_masks=args.teacher_masks)
    except (TypeError, ValueError) as exc:  # e.g. an unknown config field or value
        raise InputError(f"bad training options: {exc}") from None
    if args.cross_validate:
        for r in cross_validate(settings):
            print(f"fold {r['fold']}: best {r['monitor']} {r['best']:.4f} after {r['epochs']} epochs")
    else:
        result = train(settings)
        print(f"best {result['monitor']} {result['best']:.4f} after {result['epochs']} epochs; "
              f"weights in {args.out}/best.safetensors")


# ---------------------------------------------------------------- restore / mask

def _add_restore(sub) -> None:
    p = sub.add_parser("restore", help="deblur the faces of photos",
                       description="Deblur the faces of a photo or a folder of photos; writes OUT/<stem>.png "
                                   "per input. Every face is found, aligned, restored and pasted back; the "
                                   "rest of the photo is left exactly as it was. A square image holding one "
                                   "face at the geometry of the training crops is an aligned face crop "
                                   "already and is restored whole (said per file); --aligned and --whole "
                                   "decide instead. Without --masks the shipped mask generator makes the masks.")
    p.add_argument("input", help="image file or folder")
    p.add_argument("output", help="output folder")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--aligned", action="store_true",
                        help="inputs are aligned face crops (CelebA-HQ style): restore each whole, no detection")
    layout.add_argument("--whole", action="store_true",
                        help="inputs are photos, even where one looks like an aligned face crop")
    p.add_argument("--faces-out", default=None, metavar="DIR",
                   help="also write each face's aligned blurry crop, mask (labels 0..4 and colour) and "
                        "restored crop to DIR")
    p.add_argument("--min-face", type=number_in(0, 100_000, low_open=True), default=None, metavar="PX",
                   help="faces narrower than PX pixels are left untouched and reported (default: 32)")
    p.add_argument("--detector", default=None, choices=["hog", "cnn"],
                   help="dlib face detector: hog (default, fast) or cnn (copes better with turned heads "
                        "and poor light; on 2 CPU cores ~15 s and ~1.5 GB for a 1 MP photo with upright "
                        "faces, up to 8 times as long where none is found upright and turned copies are "
                        "searched)")
    p.add_argument("--masks", default=None, metavar="DIR", help="folder of 5-group label PNGs (values "
                   "0..4), DIR/<stem>.png per input, used instead of generated masks; the inputs are "
                   "then aligned face crops (implies --aligned)")
    p.add_argument("--weights", default=None, help="folder with mask_generator.safetensors and "
                   "smfd_unet.safetensors (default: the shipped weights)")
    _add_runtime_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("mask", help="write 5-group face masks",
                       description="Predict the 5-group semantic mask (0 background, 1 face skin, "
                                   "2 facial parts, 3 hair, 4 accessories) of each image; writes "
                                   "OUT/<stem>.png with uint8 values 0..4. Inputs are aligned face crops "
                                   "(CelebA-HQ style, as 'smfd restore --faces-out' writes them): no face "
                                   "is searched for, so a whole photo gets a meaningless mask.")
    p.add_argument("input", help="image file or folder")
    p.add_argument("output", help="output folder")
    p.add_argument("--weights", default=None, help="folder with the weights (default: the shipped weights)")
    _add_runtime_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=cmd_mask)


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    _add_device(p)
    p.add_argument("--engine", default="auto", choices=["auto", "pytorch", "openvino", "openvino-int8"],
                   help="what runs the networks: auto (default: OpenVINO on a CPU where installed, else "
                        "PyTorch), pytorch (the reference), openvino, openvino-int8 (int8-quantised); "
                        "OpenVINO converts the networks once per weights and keeps them in the cache folder")
    p.add_argument("--threads", type=int_from(1, 1024), default=None, metavar="N",
                   help="inference threads (default: $SMFD_THREADS, else one per core)")


def _restorer_factory(args):
    """How a command makes its Restorer once its inputs are known to be usable; the options the
    Restorer will read (--weights, --device, --engine, $SMFD_THREADS) are checked now, before that work."""
    from .restorer import Restorer

    Restorer.check_options(args.weights, args.device, args.threads, args.engine)

    def make():
        return Restorer.from_pretrained(args.weights, args.device, args.engine, args.threads)

    return make


def cmd_restore(args) -> None:
    from .photos import MIN_FACE
    from .restore_files import restore_files

    layout = "aligned" if args.aligned else "whole" if args.whole else "auto"
    if (args.aligned or args.masks is not None) and (args.min_face is not None or args.detector is not None):
        raise InputError("--min-face and --detector choose the faces of whole photos: "
                         "they do not go with --aligned or --masks (each input is one face, restored whole)")
    restore_files(args.input, args.output, _restorer_factory(args), args.masks, args.overwrite,
                  layout=layout, faces_out=args.faces_out,
                  min_face=MIN_FACE if args.min_face is None else args.min_face, detector=args.detector or "hog")


def cmd_mask(args) -> None:
    from .restore_files import mask_files

    mask_files(args.input, args.output, _restorer_factory(args), args.overwrite)


# ---------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="start the web app",
                       description="Start the SMFD lab web app (Gradio) on the shipped model, offline.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: the network)")
    p.add_argument("--port", type=int_from(1, 65535), default=7860, help="TCP port to serve on (default 7860)")
    p.add_argument("--weights", default=None, help="folder with the weights (default: the shipped weights)")
    p.add_argument("--examples", default=None, help="a dataset folder of square aligned faces to offer as examples")
    p.add_argument("--study-db", default=None,
                   help="SQLAlchemy URL for user-study votes, e.g. postgresql://user@host/db for "
                        "replicas on several machines; a database serves one study (weights, photos, "
                        "methods) and refuses another (default: study/votes-<key>.sqlite in $SMFD_CACHE, "
                        "~/.cache/smfd unless set, one file per study)")
    p.add_argument("--admin-token", default=None, help="token that opens the study results view "
                   "(visible to other users in the process list: prefer --admin-token-file or "
                   "$SMFD_ADMIN_TOKEN; default: a random one, printed at start-up)")
    p.add_argument("--admin-token-file", default=None, metavar="FILE",
                   help="read the admin token from FILE (surrounding white space removed)")
    p.add_argument("--study-images", default=None, help="folder of face photos for the user study "
                   "(default: realworld/cropped of the shared data, $SMFD_SHARED_DATA or "
                   "../shared/data beside the project folder, when present)")
    p.add_argument("--study-new-ids", type=int_from(1), default=None, metavar="N",
                   help="new participant ids one network address may take per minute (default 60: a "
                        "class behind one address; a script taking ids by the thousand is refused)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> None:
    from app.admin import admin_token
    from app.main import launch

    token = admin_token(args.admin_token, args.admin_token_file)
    launch(host=args.host, port=args.port, weights=args.weights, examples=args.examples,
           study_db=args.study_db, admin_token=token, study_images=args.study_images,
           study_new_ids=args.study_new_ids)


# ---------------------------------------------------------------- eval / baselines

def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="compare restoration methods; reproduce the thesis' tables",
        description="Three jobs. --pairs: restore BLURRY_DIR with every method in --methods and score "
                    "against SHARP_DIR (OUT/results.csv, results.md, chart.html, grid.png). --make-pairs: "
                    "degrade a dataset's held-out faces into OUT/{blurry,sharp,masks} under the benchmark "
                    "protocol. --thesis-tables: reproduce the thesis' tables 4.1-4.4 on --data, training "
                    "what they need into OUT/runs (kept and reused on the next run).")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pairs", nargs=2, metavar=("BLURRY_DIR", "SHARP_DIR"), help="evaluation pairs (same stems)")
    mode.add_argument("--make-pairs", metavar="DATA_DIR", help="dataset folder to make evaluation pairs from")
    mode.add_argument("--thesis-tables", action="store_true", help="reproduce tables 4.1-4.4 on --data")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("restoring and scoring (--pairs; --weights, --device and the CodeFormer "
                             "options also serve --thesis-tables)")
    g.add_argument("--masks", default=None, metavar="GT_MASK_DIR", help="5-group ground-truth masks (<stem>.png)")
    g.add_argument("--methods", nargs="+", default=["all"], metavar="NAME",
                   help="methods, space- or comma-separated, or 'all' (see 'smfd baselines list'); the blurry input is "
                        "always scored beside them")
    g.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights of a method: a checkpoint file, or for smfd/smfd-gt-mask a folder "
                        "(NAME 'smfd' sets both); default: the cache / the shipped weights")
    g.add_argument("--codeformer-fidelity", type=number_in(0, 1), default=0.5, metavar="W",
                   help="CodeFormer's fidelity weight w in 0..1 (default 0.5, the official default)")
    g.add_argument("--download", action="store_true", help="download absent official weights first")
    g.add_argument("--grid-rows", type=int_from(1), default=4, help="samples in grid.png (default 4)")
    _add_device(g)
    g.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier evaluation (or tables, or pairs) in OUT; refused "
                        "without it")
    g = p.add_argument_group("--make-pairs")
    g.add_argument("--limit", type=int_from(1), default=None, help="at most this many faces")
    g.add_argument("--seed", type=int_from(0), default=0, help="seed of the degradations (default 0)")
    g.add_argument("--split", choices=["test", "all"], default="test",
                   help="held-out test faces only (default), or every face of an unseen dataset")
    g = p.add_argument_group("--thesis-tables (the training budget of every trained row)")
    g.add_argument("--data", default=None, metavar="DATA_DIR", help="dataset folder with masks")
    g.add_argument("--tables", nargs="+", default=["4.1", "4.2", "4.3", "4.4"],
                   choices=["4.1", "4.2", "4.3", "4.4"], help="with --thesis-tables: the tables to build (default all)")
    g.add_argument("--budget", type=_budget, default=None, metavar="SAMPLES|thesis",
                   help="training samples every trained row sees (default 8192: about 29-31 minutes per "
                        "mask-generator or UNet row, 55 per UNet++ row and 23-31 per SMFD-UNet row on 2 idle "
                        "CPU cores, docs/thesis_tables.md; SMFD-UNet rows residual), or 'thesis': the thesis' "
                        "recipe (50 passes over whole faces, early stopping; a GPU's budget). Raising it "
                        "continues finished runs")
    g.add_argument("--samples-per-epoch", type=int_from(1), default=None,
                   help="training samples between two validations, a multiple of --batch (default 1024; thesis: one pass)")
    g.add_argument("--patch", type=int_from(32), default=None,
                   help="SMFD-UNet rows train on PATCH x PATCH crops (default 128; thesis: whole faces); "
                        "mask rows always see whole faces")
    g.add_argument("--batch", type=int_from(1), default=None, help="batch size (default 16)")
    g.add_argument("--val-faces", type=int_from(1), default=None,
                   help="validation faces per run (default 32; thesis: the whole fold)")
    g.add_argument("--folds", type=int_from(2), default=None, help="k of the cross-validation (default 5)")
    g.add_argument("--test-faces", type=int_from(1), default=None, help="cap on held-out faces evaluated")
    g.add_argument("--workers", type=int_from(0), default=None, help="data-loading processes per run (default 2)")
    g.add_argument("--runs", default=None, metavar="DIR",
                   help="run folders to train into or reuse (default OUT/runs)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every SMFD-UNet run, e.g. --set residual=false (the thesis' "
                        "output; the default budget's rows are residual, --budget thesis's are not)")
    p.set_defaults(func=cmd_eval, eval_parser=p)


# The options only one job of `smfd eval` reads (the others: --out, --overwrite, and --weights,
# --device, --codeformer-fidelity and --download, which --pairs and --thesis-tables share)
EVAL_JOB_OPTIONS = {
    "pairs": ("masks", "methods", "grid_rows"),
    "make_pairs": ("limit", "seed", "split"),
    "thesis_tables": ("data", "tables", "budget", "samples_per_epoch", "patch", "batch", "val_faces", "folds",
                      "test_faces", "workers", "runs", "set"),
}
RESTORING_OPTIONS = ("weights", "device", "codeformer_fidelity", "download")
TRAINED_TABLES = ("4.1", "4.3", "4.4")
# --thesis-tables options that only some tables read
TABLES_READING = {**{dest: TRAINED_TABLES for dest in ("budget", "samples_per_epoch", "batch", "val_faces", "folds",
                                                        "workers", "runs")},
                  "patch": ("4.3", "4.4"), "set": ("4.3", "4.4"), "codeformer_fidelity": ("4.2",),
                  "download": ("4.2",)}


def _check_eval_job_options(args) -> None:
    """An option of another job than the one asked for, or of a table not asked for, would be
    ignored: refuse it instead."""
    job = next(j for j in EVAL_JOB_OPTIONS if getattr(args, j) not in (None, False))
    foreign = [dest for j, dests in EVAL_JOB_OPTIONS.items() if j != job for dest in dests]
    if job == "make_pairs":
        foreign += RESTORING_OPTIONS
    for dest in foreign:
        if getattr(args, dest) != args.eval_parser.get_default(dest):
            raise InputError(f"--{dest.replace('_', '-')} does not go with --{job.replace('_', '-')}")
    if job != "thesis_tables":
        return
    for dest, tables in TABLES_READING.items():
        if getattr(args, dest) != args.eval_parser.get_default(dest) and not set(tables) & set(args.tables):
            raise InputError(f"--{dest.replace('_', '-')}: only table {' or '.join(tables)} reads it, and "
                             f"--tables {' '.join(args.tables)} builds none of them")
    named = [item.split("=")[0] for item in args.weights if item.split("=")[0] != "smfd"]
    if named and "4.2" not in args.tables:
        raise InputError(f"--weights {named[0]}=...: only table 4.2 runs {named[0]}, and --tables "
                         f"{' '.join(args.tables)} does not build it")
    reading_smfd = ("4.1", "4.2", "4.3")  # 4.1 and 4.3 read its mask generator, 4.2 runs it; 4.4 trains anew
    if len(named) < len(args.weights) and not set(reading_smfd) & set(args.tables):
        raise InputError(f"--weights smfd=...: only tables {', '.join(reading_smfd)} read the SMFD weights, "
                         f"and --tables {' '.join(args.tables)} builds none of them")


def _budget(text: str):
    if text == "thesis":
        return text
    if not text.strip().lstrip("+-").isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of training samples or 'thesis', got {text!r}")
    return int_from(1)(text)


def _method_list(items: list[str]) -> tuple[list[str], bool]:
    """The methods of --methods, and whether they were chosen by name (not 'all'); the blurry input
    is always among them: every figure is reported beside the input's own (SPEC section 2)."""
    from baselines import methods

    names = [n for item in items for n in item.split(",") if n]
    if not names:
        raise InputError("--methods names no method (see 'smfd baselines list')")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--methods names {', '.join(repeated)} more than once")
    if "all" in names and names != ["all"]:
        raise InputError("--methods all already holds every method: give it alone")
    if names == ["all"]:
        return [m.name for m in methods()], False
    return (names if "blurry" in names else [*names, "blurry"]), True


def _weights_overrides(items: list[str]) -> dict[str, str]:
    from baselines import methods

    known = {m.name for m in methods() if m.needs_weights}  # deconv and blurry take none
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in known:
            raise InputError(f"--weights expects NAME=PATH with NAME among {', '.join(sorted(known))}, got {item!r}")
        if name in out:
            raise InputError(f"--weights {name}: given twice ({out[name]} and {path})")
        if not os.path.exists(path):
            raise InputError(f"--weights {item}: {path} not found")
        out[name] = path
    return out


def cmd_eval(args) -> None:
    from .batch import check_folder

    _check_eval_job_options(args)
    check_folder(args.out, "--out")
    if args.runs:
        check_folder(args.runs, "--runs")
    if args.make_pairs:
        from eval.pairs import make_pairs

        n = make_pairs(args.make_pairs, args.out, args.limit, args.seed, args.split, args.overwrite)
        # (masks only where the faces have them)
        made = [d for d in ("blurry", "sharp", "masks") if os.path.isdir(os.path.join(args.out, d))]
        print(f"wrote {n} evaluation pairs into {args.out}/{{{','.join(made)}}}")
        return
    from eval.compare import EvalOptions

    options = EvalOptions(weights=_weights_overrides(args.weights), device=args.device,
                          fidelity=args.codeformer_fidelity, download=args.download)
    if args.thesis_tables:
        from eval.thesis import Budget, reproduce

        if not args.data:
            raise InputError("--thesis-tables needs --data DATA_DIR")
        given = {k: v for k, v in (("samples_per_epoch", args.samples_per_epoch), ("patch", args.patch),
                                   ("batch", args.batch), ("val_faces", args.val_faces), ("folds", args.folds),
                                   ("workers", args.workers)) if v is not None}
        if args.budget == "thesis":
            budget = Budget.thesis(**given)
        else:
            budget = Budget(**given, **({} if args.budget is None else {"samples": args.budget}))
        budget = budget.with_config(config_overrides(args.set))
        print(reproduce(args.data, args.out, args.tables, budget, options, args.test_faces, args.runs,
                        args.overwrite))
        return
    from eval.compare import evaluate
    from eval.pairs import find_pairs
    from eval.report import COLUMNS, markdown_table

    names, by_name = _method_list(args.methods)  # the options first: finding the pairs reads every file
    unused = [n for n in options.weights if n not in names and not (n == "smfd" and "smfd-gt-mask" in names)]
    if unused:  # a typo in --methods, or weights that would silently not be evaluated
        raise InputError(f"--weights {unused[0]}={options.weights[unused[0]]}: {unused[0]} is not among the "
                         f"methods evaluated ({', '.join(names)})")
    if args.codeformer_fidelity != args.eval_parser.get_default("codeformer_fidelity") and "codeformer" not in names:
        raise InputError(f"--codeformer-fidelity: only codeformer reads it, and it is not among the methods "
                         f"evaluated ({', '.join(names)})")
    if args.download:
        from baselines import info

        if not any(info(n).url for n in names):
            raise InputError(f"--download: none of the methods evaluated ({', '.join(names)}) has weights to download")
    pairs = find_pairs(*args.pairs, args.masks)
    if by_name and any(p.mask is None for p in pairs):  # a method chosen by name must run
        from baselines import methods

        needing = [m.name for m in methods() if m.name in names and m.needs_mask]
        if needing:
            raise InputError(f"{', '.join(needing)}: needs ground-truth masks; give --masks DIR")
    rows = evaluate(pairs, names, args.out, options, args.grid_rows, args.overwrite)
    print(markdown_table(rows, COLUMNS[:-1]))  # the status follows, one line per row
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['method']}: {r['status']}")
    print(f"results in {args.out}/results.csv (also results.md, chart.html, grid.png)")


def _add_baselines(sub) -> None:
    p = sub.add_parser("baselines", help="list or download the compared methods",
                       description="The methods 'smfd eval' compares, their licences and official weights.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="methods, licences, native sizes and weights status")
    a.set_defaults(func=cmd_baselines)
    a = actions.add_parser("download", help="fetch official weights into the cache (SHA-256 checked where "
                                "one is pinned; else recorded, to tell the file damaged later)")
    a.add_argument("names", nargs="+", metavar="NAME", help="methods whose official weights to fetch "
                   "(see 'smfd baselines list')")
    a.add_argument("--force", action="store_true", help="fetch again even if present")
    a.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> None:
    from baselines import PROTOCOL, download, downloadable, methods
    from baselines.weights import weights_dir

    if args.action == "download":
        for name in args.names:
            downloadable(name)  # fail on a typo or a method without weights before any download starts
        for name in args.names:
            download(name, args.force)
        return
    print(f"{'name':16s} {'native':>6s} {'commercial':10s} {'weights':9s} licence / title")
    for m in methods():
        state = ("-" if not m.needs_weights else "folder" if m.filename is None
                 else m.cache_state())
        print(f"{m.name:16s} {m.native_size or 'any':>6} {'yes' if m.commercial_use else 'NO':10s} "
              f"{state:9s} {m.licence}; {m.title}")
        if m.url:
            print(f"{'':16s} {m.url}\n{'':16s} sha256 {m.sha256 or 'not pinned (no published digest found)'}")
    print(f"\nweights cache: {weights_dir()}\n{PROTOCOL}")


# ---------------------------------------------------------------- info

def cmd_info(args) -> None:
    from .models import count_macs, count_parameters
    from .restorer import load_networks, weight_files

    thesis = {"mask generator": 5_416_159, "SMFD-UNet": 7_532_601}
    models = load_networks(args.weights)
    folder = weight_files(args.weights)[0].parent
    print(f"the {'shipped ' if args.weights is None else ''}networks ({folder}); compute per 256x256 face:")
    passes = 2  # each network reads the face and its mirror image
    total = 0
    for name, model in zip(thesis, models):
        c, macs = count_parameters(model), count_macs(model)
        total += macs * passes
        diff = (c["total"] - thesis[name]) / thesis[name] * 100
        print(f"{name:15s} {c['total']:>10,} parameters ({c['trainable']:,} trainable, "
              f"{c['non_trainable']:,} non-trainable); thesis {thesis[name]:,} ({diff:+.1f} %); "
              f"{macs / 1e9:.1f} GMAC x {passes} passes")
    print(f"{'together':15s} {total / 1e9:.1f} GMAC per face")


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smfd", description="SMFD lab: deblur face photos with semantic-mask guidance (SMFD-UNet).",
        epilog="Run 'smfd COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (smfd-lab)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("blur", help="degrade images with the randomised pipeline",
                       description="Degrade an image or a folder of images with the thesis' randomised "
                                   "pipeline. Writes OUT/<stem>.png and OUT/<stem>.json (the recipe); "
                                   "the same --seed gives identical bytes on the same machine (OpenCV's float filters pick "
                                   "CPU-specific code, so another CPU may differ by a grey level here and there).")
    p.add_argument("input", nargs="?", help="image file or folder")
    p.add_argument("output", nargs="?", help="output folder")
    p.add_argument("--seed", type=int_from(0), default=None, help="random seed (default 0)")
    p.add_argument("--recipe", default=None, help="replay this recipe JSON instead of sampling one (without "
                                                  "--seed or pipeline options: the recipe holds every draw)")
    p.add_argument("--count", action="store_true", help="print the number of scenarios for the options")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_blur)

    _add_restore(sub)
    _add_train(sub)
    _add_demo(sub)
    _add_eval(sub)
    _add_baselines(sub)

    p = sub.add_parser("info", help="parameter counts and compute of the networks",
                       description="Print the parameters and multiply-accumulates per 256x256 face of the "
                                   "mask generator and SMFD-UNet, beside the thesis' parameter counts.")
    p.add_argument("--weights", default=None, help="folder with mask_generator.safetensors and "
                   "smfd_unet.safetensors (default: the shipped weights)")
    p.set_defaults(func=cmd_info)
    return parser


class _Notes(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        note(record.getMessage())


def _show_library_notes() -> None:
    """The library's notes (e.g. a one-off engine conversion) as "smfd: ..." lines on stderr."""
    log = logging.getLogger("smfd")
    if not any(isinstance(h, _Notes) for h in log.handlers):
        log.addHandler(_Notes())
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a refused option (already reported in one line)
        return exc.code
    _show_library_notes()
    return run_reported(lambda: args.func(args))


def run_reported(job) -> int:
    """Run ``job()`` as every smfd command and script does: an error becomes one line on stderr
    and the exit status (2 unusable input, 1 any other failure, 130 interrupted, else 0); the
    traceback only with SMFD_DEBUG=1. Scripts end with ``sys.exit(run_reported(main))``."""
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 reaches Python as surrogates: print them escaped,
        # as stderr does by default, rather than fail on the line that reports the work
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        job()
    except BatchErrors as exc:
        report(str(exc))
        return 1
    except (InputError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        report(message_of(exc))
        return 2
    except KeyboardInterrupt:
        report("interrupted")
        return 130
    except Exception as exc:  # one line for users; the traceback on request
        if os.environ.get("SMFD_DEBUG"):
            raise
        report(f"{type(exc).__name__}: {first_line(exc)} (set SMFD_DEBUG=1 for the whole message and traceback)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
