"""SMFD lab: semantic-mask-guided deblurring of face photos (SMFD-UNet).

``from smfd import Restorer`` is the entry point; the heavy modules load on first use.
"""

__version__ = "0.1.0"
__all__ = ["Restorer"]


def __getattr__(name: str):
    if name == "Restorer":
        from .restorer import Restorer

        return Restorer
    raise AttributeError(f"module 'smfd' has no attribute {name!r}")
