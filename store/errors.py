"""The store's exception types, split by whose problem it is (the web API maps them by type:
:class:`TrackNotFound` 404, :class:`InvalidQuery` 400, :class:`StoreUnavailable` and any other
:class:`StoreError` 503; the CLI prints any of them as one line and exits 1)."""


class StoreError(Exception):
    """A problem a person can fix: not a store, a model mismatch, bad SQL, an unknown track.

    The message says what went wrong, names the path or value, and what to do.
    """


class TrackNotFound(StoreError):
    """No track has the id asked for."""

    def __init__(self, track_id: int, store: object) -> None:
        super().__init__(f"no track with id {track_id} in {store}")
        self.track_id = track_id


class InvalidQuery(StoreError):
    """The question is wrong, not the store: bad SQL or filter, an option out of range, a query
    vector of the wrong size, a seed that cannot be searched from."""


class NoMatchingTrack(InvalidQuery):
    """A file or words given to name a track name none of the store's (:meth:`store.Store.resolve_track`):
    a file it does not hold, words no track's artist, title or album contain."""


class StoreUnavailable(StoreError):
    """The store cannot be read right now: another process holds the database, or it cannot be
    opened. Trying again later (or fixing the store) helps; changing the question does not."""


class NonFiniteVector(StoreError):
    """A vector, window vector or style activation to be written is NaN or infinite: the batch is
    refused whole, before anything is written (the indexer records such a file as a failure
    before it gets here; this is the last line of defence)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"refusing to save {path}: NaN or infinity in its {what} (such a vector matches "
                         "nothing). Nothing of this batch was saved; record the file as a failure instead")
        self.path = path
        self.what = what
