"""posevit: a reproducible ViT pipeline for 15-class human-action recognition."""

__version__ = "0.1.0"
