"""posevit: a reproducible ViT pipeline for 15-class human-action recognition."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posevit")
except PackageNotFoundError:  # a source tree on sys.path without `pip install -e .`
    __version__ = "0+unknown"
