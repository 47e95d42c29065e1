"""The library's log verbosity and progress bars, with Transformers' `utils.logging` names.

Every module logs through `logging.getLogger(__name__)`, so all of them sit under the "pretrained"
logger that this module configures: its level comes from PRETRAINED_VERBOSITY (or, when that is unset,
TRANSFORMERS_VERBOSITY, so a ported script's environment keeps working) and from `set_verbosity_*`.
Records still propagate: an application that configured logging (or pytest's caplog) sees them, and
our own stderr handler prints only when nothing above it would.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings

from logging import CRITICAL, DEBUG, ERROR, FATAL, INFO, NOTSET, WARN, WARNING  # noqa: F401  (re-exported)

LIBRARY_LOGGER = "pretrained"
ENV_VARIABLES = ("PRETRAINED_VERBOSITY", "TRANSFORMERS_VERBOSITY")  # ours first; Transformers' as an alias
LOG_LEVELS = {"detail": DEBUG, "debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR,
              "critical": CRITICAL}

_lock = threading.Lock()
_configured = False
_progress_bars = True


class _DefaultHandler(logging.StreamHandler):
    """stderr, looked up at each record (so redirected or captured streams work), and silent when the
    root logger has handlers: they print the record already, through propagation."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record):
        if logging.getLogger().handlers:
            return
        self.setStream(sys.stderr)
        super().emit(record)


_default_handler = _DefaultHandler()


def _level_from_environment() -> int | None:
    for name in ENV_VARIABLES:
        value = os.environ.get(name)
        if value:
            if value.lower() in LOG_LEVELS:
                return LOG_LEVELS[value.lower()]
            warnings.warn(f"{name}={value!r} is not a log level; expected one of {sorted(LOG_LEVELS)}. "
                          "Using 'warning'.", stacklevel=2)
            return None
    return None


def _root() -> logging.Logger:
    global _configured
    logger = logging.getLogger(LIBRARY_LOGGER)
    if not _configured:
        with _lock:
            if not _configured:
                logger.addHandler(_default_handler)
                logger.setLevel(_level_from_environment() or WARNING)
                _configured = True
    return logger


def get_logger(name: str | None = None) -> logging.Logger:
    """The library's logger (or `name`'s): a plain `logging.Logger`."""
    _root()
    return logging.getLogger(name or LIBRARY_LOGGER)


def get_verbosity() -> int:
    return _root().getEffectiveLevel()


def set_verbosity(verbosity: int) -> None:
    """Level of the "pretrained" logger: DEBUG, INFO, WARNING, ERROR or CRITICAL (or their names)."""
    if isinstance(verbosity, str):
        if verbosity.lower() not in LOG_LEVELS:
            from .errors import InputError

            raise InputError(f"set_verbosity({verbosity!r}): expected a logging level or one of {sorted(LOG_LEVELS)}")
        verbosity = LOG_LEVELS[verbosity.lower()]
    _root().setLevel(verbosity)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def disable_default_handler() -> None:
    _root().removeHandler(_default_handler)


def enable_default_handler() -> None:
    _root().addHandler(_default_handler)


def add_handler(handler: logging.Handler) -> None:
    _root().addHandler(handler)


def remove_handler(handler: logging.Handler) -> None:
    _root().removeHandler(handler)


def disable_propagation() -> None:
    _root().propagate = False


def enable_propagation() -> None:
    _root().propagate = True


def enable_explicit_format() -> None:
    """Prefix our records with level, file and line, as Transformers' explicit format."""
    formatter = logging.Formatter("[%(levelname)s|%(filename)s:%(lineno)s] %(asctime)s >> %(message)s")
    for handler in _root().handlers:
        handler.setFormatter(formatter)


def reset_format() -> None:
    for handler in _root().handlers:
        handler.setFormatter(None)


# ---------------------------------------------------------------------- progress bars
def is_progress_bar_enabled() -> bool:
    """Whether our progress bars (Trainer, downloads) show."""
    return _progress_bars


def enable_progress_bar() -> None:
    global _progress_bars
    _progress_bars = True
    _hub_progress_bars(True)


def disable_progress_bar() -> None:
    """Hide our progress bars and huggingface_hub's download bars."""
    global _progress_bars
    _progress_bars = False
    _hub_progress_bars(False)


def _hub_progress_bars(enabled: bool) -> None:
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if enabled else disable_progress_bars)()


_root()  # the environment's verbosity applies from the first import of the package
