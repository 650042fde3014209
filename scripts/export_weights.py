"""Copy a training run's best checkpoint into the package as compact fp16 weights.

    .venv/bin/python scripts/export_weights.py runs/mask/best.safetensors smfd/weights/mask_generator.safetensors
    .venv/bin/python scripts/export_weights.py runs/smfd_mix/best.safetensors smfd/weights/smfd_unet.safetensors

The configuration and the run's metadata (epoch, validation scores, training settings) travel with
the weights; loading converts them back to float32.
"""

import sys

from smfd import checkpoint
from smfd.cli import run_reported, script_parser


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("source", help="a run's best.safetensors")
    parser.add_argument("target", help="where the fp16 copy goes")
    args = parser.parse_args()
    info = checkpoint.read_metadata(args.source)["info"]
    model = checkpoint.load(args.source)
    checkpoint.save(args.target, model, half=True, **info)
    print(f"{args.source} -> {args.target} (fp16, epoch {info.get('epoch')}, scores {info.get('scores')})")


if __name__ == "__main__":
    sys.exit(run_reported(main))
