"""External restoration methods behind one small interface (GFPGAN, CodeFormer, RestoreFormer(++),
classical deconvolution, the blurry input itself, and SMFD-UNet for comparison)."""

from .interface import Method, MethodInfo, WeightsDamaged, WeightsMissing
from .registry import PROTOCOL, download, downloadable, info, load, methods

__all__ = ["PROTOCOL", "Method", "MethodInfo", "WeightsDamaged", "WeightsMissing", "download", "downloadable",
           "info", "load", "methods"]
