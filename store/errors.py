"""The store's one exception type."""


class StoreError(Exception):
    """A problem a person can fix: not a store, a model mismatch, bad SQL, an unknown track.

    The message says what went wrong, names the path or value, and what to do.
    """
