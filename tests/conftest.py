"""Shared fixtures: the real data in ../shared/data and small random-weight checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """$SMFD_SHARED_DATA, else ../shared/data beside the checkout, else the workplace's /work/shared."""
    if os.environ.get("SMFD_SHARED_DATA"):
        return Path(os.environ["SMFD_SHARED_DATA"])
    candidates = [ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    return next((c for c in candidates if (c / "celebamask_mini").is_dir()), candidates[0])


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
    from smfd.restorer import DEBLUR_WEIGHTS, MASK_WEIGHTS

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    checkpoint.save(folder / MASK_WEIGHTS, MaskNet().eval(), half=True)
    checkpoint.save(folder / DEBLUR_WEIGHTS, SMFDNet().eval(), half=True)
    return folder
