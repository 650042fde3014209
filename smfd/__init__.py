"""SMFD lab: semantic-mask-guided deblurring of face photos (SMFD-UNet)."""

__version__ = "0.1.0"
