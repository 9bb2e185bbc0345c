"""The version of finejobs (one place: the package, the CLI and the worker registry read it)."""

__version__ = "0.1.0"
