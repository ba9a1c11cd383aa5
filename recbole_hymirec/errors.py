"""Errors that carry a message for the user: the problem and its fix, no traceback needed."""


class HyMiRecError(Exception):
    """Base class; the CLI prints these as one line and exits with status 2."""


class ConfigError(HyMiRecError, ValueError):
    """A model name, dataset name or config value that cannot work."""


class DatasetNotFoundError(HyMiRecError, FileNotFoundError):
    """The atomic files of a dataset are missing."""


class EnvironmentMismatchError(HyMiRecError, RuntimeError):
    """An installed package version RecBole 1.2.1 cannot run on."""
