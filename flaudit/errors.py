"""The one exception family of flaudit. Messages say what to do next."""

from __future__ import annotations


class FlauditError(Exception):
    """Base class of every error flaudit raises on purpose (the CLI prints these without a traceback)."""


class ScenarioError(FlauditError):
    """A scenario file (or a value built from one) is invalid: names the file, key path and what is allowed."""


class UnknownNameError(FlauditError, KeyError):
    """A name looked up in a registry does not exist; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetUnavailableError(FlauditError):
    """A dataset cannot be had on this machine; the message names the file or folder to provide."""


class WeightsUnavailableError(FlauditError):
    """Model weights cannot be had on this machine; the message names the file and the path to put it at."""


class CaptureCorruptError(FlauditError):
    """A run directory's file is missing, truncated or does not match its manifest hash."""


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters (a value quoted in a message may be a whole file)."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class RunDirLockedError(FlauditError):
    """Another process is writing the run directory (its lock is held); names the directory and the holder."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that `finally` blocks run
    (Ray is shut down, a half-written temporary file removed) before the process ends."""
