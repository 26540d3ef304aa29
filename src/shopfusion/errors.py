"""The exceptions shopfusion raises.

Every error a caller can act on derives from :class:`ShopfusionError`::

    ShopfusionError
    ├── ConfigError          a config file or argument is invalid
    ├── DataError            input data cannot be used as given
    │   ├── UnknownIdError   an external id is not in the id mapping
    │   └── EmptyDataError   nothing valid remains after cleaning
    ├── NotFittedError       a model is used before ``fit``
    ├── ModelFitError        training diverged (NaN factors and the like)
    └── ArtifactError        a saved artifact is missing, corrupt or of another version

Messages say what went wrong *and* what to do about it. Only the command line
and the HTTP layer turn these into exit codes and status codes.
"""

from __future__ import annotations


class ShopfusionError(Exception):
    """Base class of every error shopfusion raises on purpose."""


class ConfigError(ShopfusionError):
    """A configuration value is invalid."""


class DataError(ShopfusionError):
    """Input data cannot be used as given."""


class UnknownIdError(DataError, KeyError):
    """An external id is not known to the id mapping."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown id"


class EmptyDataError(DataError):
    """Nothing valid remains after validation and cleaning."""


class NotFittedError(ShopfusionError):
    """A model was used before it was fitted."""


class ModelFitError(ShopfusionError):
    """Training failed to produce a usable model."""


class ArtifactError(ShopfusionError):
    """A saved artifact is missing, corrupt or was written by an incompatible version."""
