"""The 2-D map's pieces, each in its own module; :mod:`indexer.projection` puts them together
into the store-level entry points (``compute_map``, ``update_map``).

- ``fit.py``: fitting a map (PCA to 50 dimensions, then openTSNE with FAISS neighbours,
  scikit-learn's TSNE, or PCA alone);
- ``placement.py``: placing new vectors into a fitted map without moving it (tracks indexed
  later, an uploaded clip in the explorer);
- ``quality.py``: how faithful a map is to the vectors (trustworthiness, kNN preservation,
  category agreement) and how hub-ridden the similar lists are;
- ``clusters.py``: the ``cluster`` colouring (spherical k-means) and assigning new vectors to it;
- ``model.py``: what a map keeps beside the store to place tracks later (its PCA and cluster
  centres, ``STORE/maps/NAME.npz``).

Imports flow one way: ``placement`` uses ``model``; nothing here imports
:mod:`indexer.projection`.
"""
