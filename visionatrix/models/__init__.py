"""The model layer: where model files live (:mod:`.folders`, :mod:`.extra_paths`), what the catalog offers
(:mod:`.catalog`), what of it is on disk (:mod:`.inventory`) and how it gets there (downloads, the installer).

See ``docs/design/models.md`` for the contract and ``docs/models.md`` for the user's view. Nothing here imports
torch; importing this package imports nothing else.
"""
