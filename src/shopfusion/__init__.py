"""shopfusion: product search and recommendations that fuse pretrained encoders with behavioural models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
