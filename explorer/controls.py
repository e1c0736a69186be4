"""The similar list's controls as one value: how many, at most per artist and per album, one
version of each song, a filter, and whether the person's taste steers it.

They come from two places, each with its own constructor: the page's Dash controls
(:meth:`ListControls.from_controls`: raw widget values, which may be empty or out of range) and the
JSON API's parsed query string (:meth:`ListControls.from_args`: already checked by
:mod:`explorer.params`). Both go through the same rules, so the page and ``GET /api/v1/panel/<id>``
make the same list for the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from store.search import VarietyOptions

from .limits import K_DEFAULT, K_PAGE_MAX


@dataclass(frozen=True)
class ListControls:
    """The similar list's controls, normalised.

    Attributes
    ----------
    k : int
        How many similar tracks, 1 to :data:`explorer.limits.K_PAGE_MAX`.
    max_per_artist, max_per_album : int or None
        At most this many per artist / per album; None: no limit.
    dedupe : bool
        Drop other copies of the same song (same artist and title).
    where : str or None
        A SQL condition over the tracks' columns, stripped; None: no filter.
    taste : bool
        Steer the list by the person's taste (the page's "use my taste"; the API's ``taste``).
    """

    k: int = K_DEFAULT
    max_per_artist: int | None = None
    max_per_album: int | None = None
    dedupe: bool = False
    where: str | None = None
    taste: bool = True

    @classmethod
    def from_controls(cls, k: int | None, per_artist: int | None, per_album: int | None,
                      dedupe: bool | list[str] | None, where: str | None, taste: bool = True) -> ListControls:
        """From the page's widgets: ``k`` out of range (or empty) is the default, an empty or 0 limit
        is none, ``dedupe`` is the checklist's value (a non-empty list: on), a blank ``where`` none."""
        return cls(k=int(k) if k and 1 <= int(k) <= K_PAGE_MAX else K_DEFAULT,
                   max_per_artist=int(per_artist) if per_artist else None,
                   max_per_album=int(per_album) if per_album else None,
                   dedupe=bool(dedupe), where=where.strip() if where and where.strip() else None, taste=bool(taste))

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> ListControls:
        """From the JSON API's parsed query parameters (``k``, ``max_per_artist``, ``max_per_album``,
        ``dedupe``, ``where``, ``taste``: :data:`explorer.api.SIMILAR`)."""
        return cls.from_controls(args["k"], args["max_per_artist"], args["max_per_album"], args["dedupe"],
                                 args["where"], args.get("taste", True) is not False)

    def variety(self) -> VarietyOptions:
        """The controls other than ``k`` as keyword arguments for :meth:`store.Store.search`."""
        options: VarietyOptions = {"dedupe": self.dedupe}
        if not self.taste:  # steered is the store's default
            options["taste"] = False
        if self.max_per_artist:
            options["max_per_artist"] = self.max_per_artist
        if self.max_per_album:
            options["max_per_album"] = self.max_per_album
        if self.where:
            options["where"] = self.where
        return options
