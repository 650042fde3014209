"""Shared fixtures: the real data in ../shared/data and small random-weight checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smfd.paths import shared_data as default_shared_data


def _find_shared_data() -> Path:
    """$SMFD_SHARED_DATA, else ../shared/data beside the checkout (smfd.paths.shared_data), else
    the workplace's /work/shared."""
    found, fallback = default_shared_data(), Path("/work/shared/data")
    if os.environ.get("SMFD_SHARED_DATA") or (found / "celebamask_mini").is_dir():
        return found
    return fallback if (fallback / "celebamask_mini").is_dir() else found


SHARED_DATA = _find_shared_data()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (see its README); the only skip allowed is when the folder is truly absent."""
    if not (SHARED_DATA / "celebamask_mini").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set SMFD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def celeba(shared_data) -> Path:
    return shared_data / "celebamask_mini"


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A weights folder with randomly initialised networks of the real architectures."""
    import torch

    from smfd import checkpoint
    from smfd.models import MaskNet, SMFDNet
    from smfd.restorer import weight_files

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    mask_path, deblur_path = weight_files(folder)
    checkpoint.save(mask_path, MaskNet().eval(), half=True)
    checkpoint.save(deblur_path, SMFDNet().eval(), half=True)
    return folder
