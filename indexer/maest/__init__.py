"""MAEST on ``transformers``: the Essentia-exact front end, the model runner, checkpoint conversion.

Written from ``maest-spec.md`` (facts from the paper, Essentia's documentation and the published
checkpoints); no code of the AGPL reference implementation is used.
"""
