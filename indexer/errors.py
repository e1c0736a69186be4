"""The indexer's exception types."""


class IndexerError(Exception):
    """A problem a person can fix: a missing folder, no audio, a model that cannot be loaded."""


class FileFailure(Exception):
    """One file could not be processed; recorded in ``failures`` and never stops a run.

    Parameters
    ----------
    stage : str
        ``tags``, ``decode`` or ``embed``.
    reason : str
        A message for people.
    """

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
