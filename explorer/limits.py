"""Every limit and default of the explorer, its JSON API and its Subsonic endpoints, in one place.

The page and the API differ on purpose where a person and a program differ: the page lists at
most :data:`K_PAGE_MAX` similar tracks (a list you read), the API returns up to :data:`K_API_MAX`
(a playlist generator's input). Song paths and playlist extensions use the store's own limits
(``store.listening.MAX_PATH``, ``MAX_EXTEND``).
"""

from __future__ import annotations

K_DEFAULT = 10
"""Similar tracks when none is asked for (page, API and permalinks)."""
K_PAGE_MAX = 100
"""Most similar tracks the page lists (its ``k`` box, and ``k=`` in a permalink)."""
K_API_MAX = 1000
"""Most similar tracks one API call returns."""
PATH_STEPS = 10
"""Tracks in a song path the page draws when none is asked for."""
EXTEND_N = 20
"""Tracks the page adds to a playlist when none is asked for."""
SEARCH_DEBOUNCE_S = 0.1
"""How long the search box waits after a keystroke before it searches (title/artist or sound)."""
SEARCH_RESULTS = 8
"""Search hits the page lists as you type."""
SOUND_LIST = 20
"""Tracks the page lists for a search by sound."""
SOUND_LIGHT = 100
"""Most tracks a search by sound lights up on the map (the list's and more: where such tracks lie);
a tenth of a smaller library, and never fewer than the list."""
SEARCH_MAX = 100
"""Most search hits one API call returns."""
PAGE_MAX = 1000
"""Most tracks in one page of ``/api/v1/tracks``."""
SQL_MAX_ROWS = 5000
"""Most rows a SQL query returns to the page or the API (``truncated`` says when cut)."""
SQL_TIMEOUT = 10.0
"""Seconds a SQL query from the web may run."""
SUBSONIC_MAX_COUNT = 500
"""Most songs one Subsonic call returns (a larger page ``size`` or ``count`` is this many)."""
SUBSONIC_MAX_OFFSET = 1_000_000_000
"""Largest Subsonic page offset (a larger one is this: past the end, an empty page)."""
BODY_LIMIT = 1 << 20
"""Largest request body, uploads aside."""
MAX_UPLOAD_MB = 50
"""Default size limit of one upload (``musicmap serve --max-upload-mb``)."""
MAX_UPLOAD_SECONDS = 20 * 60
"""Longest clip embedded; longer ones are refused (the embedding would hold a request for minutes)."""
MIX_N = 30
"""Tracks in the page's "For you" mix, and the API's when none is asked for."""
MIX_MAX = 200
"""Most tracks one mix from the API holds."""
