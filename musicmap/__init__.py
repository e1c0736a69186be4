"""musicmap: explore a music library by how it sounds.

This package is the composition root: the ``musicmap`` CLI and its settings. It wires
``indexer`` (scan, decode, embed, map), ``store`` (DuckDB + FAISS) and ``explorer``
(the Dash app) together.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .library import Library

__version__ = "0.1.0"


def open(path: str | os.PathLike[str]) -> Library:
    """Open a store read-only from Python: similar tracks, song paths, SQL, the map and the vectors,
    as pandas DataFrames and NumPy arrays (:class:`musicmap.library.Library`). Imported on first
    use, so the command line starts as fast as before."""
    from .library import Library

    return Library(path)
