"""musicmap indexer: from audio files to the store. Imports ``store`` only (and ``ray`` in
``distributed.py``, only when that engine runs).

Where each idea lives:

- finding files and their identity: ``scan.py`` (walk, fingerprint); tags: ``tags.py``,
  ``metadata.py`` (a CSV of labels, ``--category-from``, predicted genres); decoding: ``decode.py``;
- the models: ``embedders/`` (the ``Embedder`` interface in ``base.py``; ``features``, MusiCNN and
  MAEST adapters, ``FAST`` presets), MAEST itself in ``maest/`` (front end, model, checkpoint
  conversion, our int8 layers), MusiCNN in ``musicnn/`` (checkpoint reader, model, front end);
  the CPU's abilities and the precision choice: ``cpu.py``;
- an index run, as stages: one file's tags → decode → embed in ``files.py``; sorting the scanned
  files, batching and streaming in ``pipeline.py`` (``index_library``); writes, failures and the
  wrap-up shared by both engines in ``run.py``; the Ray engine in ``distributed.py``; the Parquet
  shards it stages and ``ingest`` in ``shards.py``;
  the time budget before a run in ``plan.py``; fidelity of faster modes in ``fidelity.py``;
- the map: ``projection.py`` (a store's map fitted, kept up to date and measured: ``compute_map``,
  ``update_map``) over ``mapping/``: the fit (``fit.py``), placing new tracks (``placement.py``),
  quality and hubness (``quality.py``), the cluster colouring (``clusters.py``), the PCA and
  centres kept beside the store (``model.py``);
- writing predictions back into files: ``tagwrite.py``.
"""
