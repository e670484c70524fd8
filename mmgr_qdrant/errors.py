"""The error hierarchy: every fault the library raises is an :class:`MMGRError`.

Each message is one sentence: what happened, what was given, and how to fix it.
Both store backends raise the same subclass for the same fault.
"""

from __future__ import annotations


class MMGRError(Exception):
    """Base class of every error raised by mmgr-qdrant."""


class ConfigError(MMGRError):
    """A setting is invalid, or an index was opened with settings that do not match it."""


class MissingDependencyError(MMGRError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EncoderError(MMGRError):
    """An encoder could not be found, loaded or run."""


class InputError(MMGRError, ValueError):
    """An item given to the library (image, text, vector, id, query) is unusable."""


class NotFoundError(MMGRError, KeyError):
    """An id, collection or artifact that was asked for does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CollectionNotFoundError(NotFoundError):
    """The named collection does not exist in the store."""


class DimensionMismatchError(InputError):
    """A vector's dimension differs from the collection's."""


class StoreError(MMGRError):
    """The Qdrant store failed or cannot be reached."""


class StoreUnavailableError(StoreError):
    """The Qdrant server is unreachable, or an embedded store is locked by another process."""


class ArtifactError(MMGRError):
    """A saved index artifact (config, codebooks, decoder) is missing, corrupt or incompatible."""


class NotBuiltError(MMGRError):
    """An operation needs ``build()`` to have run on the index first."""


class QuerySyntaxError(InputError):
    """A query string could not be parsed; the message names the position and what was expected."""

    def __init__(self, message: str, *, position: int = -1) -> None:
        super().__init__(message)
        self.position = position


def missing_dependency(package: str, extra: str | None) -> MissingDependencyError:
    """Build the error raised when a dependency is absent.

    Args:
        package: the distribution(s) to install, as ``pip`` names them.
        extra: the ``mmgr-qdrant`` extra that brings it, or ``None`` for a core dependency
            (one that a plain ``pip install mmgr-qdrant`` installs).
    """
    if extra is None:
        return MissingDependencyError(
            f"The dependency {package!r} is not installed; install it with `pip install {package}` "
            "(a plain `pip install mmgr-qdrant` brings it)."
        )
    return MissingDependencyError(
        f"The optional dependency {package!r} is not installed; "
        f"install it with `pip install 'mmgr-qdrant[{extra}]'`."
    )
