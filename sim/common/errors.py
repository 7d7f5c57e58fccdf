"""User-facing error types: every user mistake becomes one of these, printed as one line with exit code 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, file, argument); the message names what, where and what is valid."""


class DeploymentDoesNotFit(UserError):
    """A model's weights (plus activation reserve) do not fit the GPUs of a replica."""


class ConfigError(UserError):
    """A config value is missing, of the wrong type or out of range."""


class DataError(UserError):
    """A data file (trace, quality data, calibration CSV) is missing or malformed."""


class SimulationStuck(RuntimeError):
    """The simulator stopped making progress (a bug, not a user mistake): raised instead of looping forever."""
