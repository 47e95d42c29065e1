"""Exception types. Each subclasses the builtin that Transformers raises in the same place,
so `except OSError` / `except ValueError` written for Transformers keeps working."""


class PretrainedError(Exception):
    """Base class of every error raised on purpose by `pretrained`."""


class ConfigError(PretrainedError, ValueError):
    """A config value has the wrong type or an impossible value; the message names the field."""


class CheckpointError(PretrainedError, OSError):
    """A checkpoint file or folder is missing, unreadable or malformed; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle checkpoint asks to run code (a global other than plain tensors); refused, nothing ran."""


class UnknownModelError(PretrainedError, ValueError):
    """A model_type or task with no registered implementation; the message lists the supported ones."""


class InputError(PretrainedError, ValueError):
    """An argument of a call (inputs, generation settings, options) is missing, contradictory or out of
    range; the message names the argument and what was expected."""


class UnsupportedOptionError(InputError):
    """An option Transformers accepts that `pretrained` does not implement; refused by name, never ignored."""
