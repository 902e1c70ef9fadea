"""Errors that stop a stage with a message meant for the person running it."""


class PosevitError(Exception):
    """Base class: stage entry points print the message (no traceback) and exit non-zero."""


class ConfigError(PosevitError):
    """A config value is missing, misspelt or out of range."""


class DataError(PosevitError):
    """The dataset cannot be loaded or split as configured."""


class ImageError(PosevitError):
    """One image cannot be decoded or normalised (the image is dropped, not the run)."""


class NotAnImage(ImageError):
    """The bytes are no image format PIL knows."""


class ImageTooLarge(ImageError):
    """Too many bytes or pixels (the pixel count is read from the header, before decoding)."""
