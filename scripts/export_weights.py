"""Copy a training run's best checkpoint into the package as compact fp16 weights.

    .venv/bin/python scripts/export_weights.py runs/mask/best.safetensors smfd/weights/mask_generator.safetensors --overwrite
    .venv/bin/python scripts/export_weights.py runs/smfd_mix/best.safetensors smfd/weights/smfd_unet.safetensors --overwrite

The configuration and the run's metadata (epoch, validation scores, training settings) travel with
the weights; loading converts them back to float32.
"""

import os
import sys
from pathlib import Path

from smfd import checkpoint
from smfd.batch import check_folder
from smfd.cli import run_reported, script_parser
from smfd.errors import InputError


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("source", help="a run's best.safetensors")
    parser.add_argument("target", help="where the fp16 copy goes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing TARGET (e.g. the shipped weights) with a network of its kind")
    args = parser.parse_args()
    source = checkpoint.read_metadata(args.source)
    info, kind = source["info"], source["config"].get("kind")
    target = Path(args.target)
    if target.exists() and os.path.samefile(target, args.source):  # the run's fp32 weights would be lost
        raise InputError(f"{target}: TARGET is SOURCE; name another file")
    if target.is_dir():
        raise InputError(f"{target}: a folder; give the file to write")
    if target.exists():
        if not args.overwrite:
            raise InputError(f"{target}: exists already (use --overwrite to replace it)")
        try:
            held = checkpoint.read_metadata(target)["config"].get("kind")
        except InputError:  # cut short or not a checkpoint: nothing to keep
            held = kind
        if held != kind:  # e.g. the two arguments of the docstring's two lines mixed up
            raise InputError(f"{target}: holds a {held} network; {args.source} is a {kind} network")
    else:
        check_folder(target.parent, "TARGET")
    model = checkpoint.load(args.source)
    checkpoint.save(args.target, model, half=True, **info)
    print(f"{args.source} -> {args.target} (fp16, epoch {info.get('epoch')}, scores {info.get('scores')})")


if __name__ == "__main__":
    sys.exit(run_reported(main))
