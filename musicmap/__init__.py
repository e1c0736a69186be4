"""musicmap: explore a music library by how it sounds.

This package is the composition root: the ``musicmap`` CLI and its settings. It wires
``indexer`` (scan, decode, embed, map), ``store`` (DuckDB + FAISS) and ``explorer``
(the Dash app) together.
"""

__version__ = "0.1.0"
