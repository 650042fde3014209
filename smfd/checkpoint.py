"""Checkpoints: safetensors weights with the model's config stored beside them in the metadata.

Loading never unpickles anything, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .images import InputError
from .models import build, config_from_dict, config_to_dict

FORMAT = "smfd-1"


def save(path: str | Path, model: torch.nn.Module, half: bool = False, **info) -> Path:
    """Write model weights (fp16 if ``half``) and its config; extra ``info`` goes into metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(config_to_dict(model.config)),
            "info": json.dumps(info, default=str)}
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not an SMFD checkpoint (metadata format {meta.get('format')!r})")
    return {"config": json.loads(meta["config"]), "info": json.loads(meta.get("info", "{}"))}


def load(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network from the stored config and load its weights (in float32, eval mode)."""
    meta = read_metadata(path)
    model = build(config_from_dict(meta["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    model.info = meta["info"]
    return model.to(device).eval()
