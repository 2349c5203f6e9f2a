"""Exceptions that tell the user what to fix."""


class DynaStreamError(Exception):
    """Base class for every error this package raises on purpose."""


class DataError(DynaStreamError):
    """A data file is missing, corrupt, or does not hold what was asked for."""


class CheckpointError(DynaStreamError):
    """A checkpoint cannot be loaded or does not fit the code or the data."""


class ConfigError(DynaStreamError):
    """A configuration value is invalid."""
