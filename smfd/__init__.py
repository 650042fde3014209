"""SMFD lab: semantic-mask-guided deblurring of face photos (SMFD-UNet).

``from smfd import Restorer`` is the entry point; the heavy modules load on first use.
"""

import sys

__version__ = "0.1.0"  # the one place it is written (pyproject.toml reads it)
__all__ = ["Restorer"]

# OpenVINO (and NNCF through it) sends usage statistics to Google Analytics from its first import,
# and keeps a client id in ~/intel: the project runs offline and sends nothing. Without its
# telemetry package OpenVINO uses a stub that does nothing.
sys.modules.setdefault("openvino_telemetry", None)


def __getattr__(name: str):
    if name == "Restorer":
        from .restorer import Restorer

        return Restorer
    raise AttributeError(f"module 'smfd' has no attribute {name!r}")
