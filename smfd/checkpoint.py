"""Checkpoints: safetensors weights with the model's config stored beside them in the metadata.

Loading never unpickles anything, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import InputError
from .images import write_atomically
from .models import build, config_from_dict, config_to_dict

FORMAT = "smfd-1"


def save(path: str | Path, model: torch.nn.Module, half: bool = False, **info) -> Path:
    """Write model weights (fp16 if ``half``) and its config; extra ``info`` goes into metadata."""
    model = getattr(model, "module", model)  # unwrap DDP
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(config_to_dict(model.config)),
            "info": json.dumps(info, default=str)}
    return write_atomically(path, lambda tmp: save_file(state, tmp, metadata=meta), ".safetensors")


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {'a folder, not a checkpoint file' if path.is_dir() else 'checkpoint not found'}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not an SMFD checkpoint (metadata format {meta.get('format')!r})")
    try:
        config, info = json.loads(meta["config"]), json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: unreadable SMFD metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: unreadable SMFD metadata (the config is not a JSON object)")
    return {"config": config, "info": info}


def load(path: str | Path, device: str | torch.device = "cpu", kinds: tuple[str, ...] | None = None
         ) -> torch.nn.Module:
    """Rebuild the network from the stored config and load its weights (in float32, eval mode).

    ``kinds``: the config kinds accepted (e.g. ``("deblur",)``), so that a swapped file is named.
    """
    meta = read_metadata(path)
    kind = meta["config"].get("kind")
    if kinds is not None and kind not in kinds:
        raise InputError(f"{path}: holds a {kind!r} network, expected {' or '.join(map(repr, kinds))}")
    try:
        model = build(config_from_dict(meta["config"]))
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        # e.g. a config from another version, or weights that do not fit it
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        if lines[0].startswith("Error(s) in loading state_dict") and len(lines) > 1:
            lines = lines[1:]  # torch's header names only the class: the first difference says what
        first = lines[0] if len(lines[0]) <= 300 else lines[0][:300] + " ..."  # missing keys: one long line
        more = f"; {len(lines) - 1} more" if len(lines) > 1 else ""
        raise InputError(f"{path}: the checkpoint does not rebuild its network ({first}{more})") from None
    model.info = meta["info"]
    return model.to(device).eval()
