"""The indexer's exception types."""


class IndexerError(Exception):
    """A problem a person can fix: a missing folder, no audio, a model that cannot be loaded."""


class NoAudioFiles(IndexerError):
    """The folders given hold no audio file (``roots``: the ones that hold none)."""

    def __init__(self, message: str, roots: list[str]) -> None:
        super().__init__(message)
        self.roots = roots


class FileFailure(Exception):
    """One file could not be processed; recorded in ``failures`` and never stops a run.

    Parameters
    ----------
    stage : str
        ``decode`` or ``embed`` (a non-finite embedding too: :mod:`indexer.finite`). Tags never
        fail a file (they fall back to the file name); a file that cannot be stat'ed is a ``read``
        failure and an unlistable folder a ``scan`` one, recorded without this exception.
    reason : str
        A message for people.
    """

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
