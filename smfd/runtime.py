"""Where and how tensors run: device choice, bf16 autocast and PyTorch's threads."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import InputError


def pick_device(name: str, rank: int = 0) -> torch.device:
    """'auto' (CUDA when present), 'cpu' or 'cuda'; an unusable choice is an InputError. A chosen
    device's own name ('cuda:1', what str() of it gives) names it again, for callers that pass one on."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    cuda, _, index = name.partition(":")
    if cuda == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} asked for, but no CUDA GPU is available")
        count = torch.cuda.device_count()
        if not index:
            return torch.device("cuda", rank % count)
        if index.isdecimal() and int(index) < count:
            return torch.device("cuda", int(index))
        raise InputError(f"device {name!r}: no such CUDA GPU ({count} here)")
    if name != "cpu":
        raise InputError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether bf16 runs natively here (CUDA, or a CPU with AVX512-BF16/AMX). SMFD_BF16=0/1 overrides."""
    forced = os.environ.get("SMFD_BF16", "").strip()
    if forced:  # "yes" or "true" silently meant "let the machine decide"
        if forced not in ("0", "1"):
            raise InputError(f"$SMFD_BF16 must be 0 (float32) or 1 (bf16), got {forced!r}")
        return forced == "1"
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_autocast(device: torch.device | str):
    """bf16 autocast where the hardware runs it natively, which doubles CPU speed here; elsewhere a
    no-op. Heads that need float32 precision switch it off themselves."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=native_bf16(device.type))


@contextmanager
def torch_threads(n: int | None):
    """PyTorch's intra-op threads set to ``n`` inside the block and put back after it (None: left
    as they are). In PyTorch's OpenMP builds the setting is the calling thread's own, so blocks in
    other threads (the app restores from a background thread too) do not undo it; but a thread
    that first uses PyTorch while the block runs starts with ``n`` and keeps it."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
