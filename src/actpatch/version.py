"""actpatch's version, in a module that imports nothing: the run history stamps each run with
it without importing the package's public API (which imports everything above the history)."""

__version__ = "0.1.0"
