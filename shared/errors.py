"""Errors a user can act on. Each message says what was wrong and what to do next; the CLI
prints it on one line and exits with status 2 instead of a traceback."""


class LineinspectError(Exception):
    """Base class for every error that is the user's input or setup, not a bug."""


class ImageReadError(LineinspectError):
    """An image or mask file (or bytes) could not be read or decoded."""


class DatasetError(LineinspectError):
    """A dataset folder or manifest is missing, empty or inconsistent."""


class ModelPackageError(LineinspectError):
    """A model package is missing, tampered with, of the wrong kind or incompatible."""
