"""The store's exception types."""


class StoreError(Exception):
    """A problem a person can fix: not a store, a model mismatch, bad SQL, an unknown track.

    The message says what went wrong, names the path or value, and what to do.
    """


class TrackNotFound(StoreError):
    """No track has the id asked for (the web API answers 404 for it, other store errors 400)."""

    def __init__(self, track_id: int, store: object) -> None:
        super().__init__(f"no track with id {track_id} in {store}")
        self.track_id = track_id
