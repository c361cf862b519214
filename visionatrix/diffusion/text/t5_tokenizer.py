"""T5's tokenizer (SentencePiece Unigram, google t5-v1_1) from a local file, never from the network.

No installed package ships T5's vocabulary (unlike CLIP's BPE, which open_clip ships and we carry): it is a catalog
download installed like a model (``CATALOG_ENTRY``: the ``tokenizer.json`` of google/t5-v1_1-xxl, Apache-2.0, the
file ComfyUI carries as ``t5_tokenizer/tokenizer.json``). ``t5_tokenizer(path)`` takes that file, or a folder holding
``tokenizer.json`` (preferred) or ``spiece.model``, and builds transformers' ``T5Tokenizer`` (tokenizers backend)
from it with ``local_files_only``. A ``spiece.model`` alone needs the ``sentencepiece``/``protobuf`` packages to be
converted, which are not dependencies: then the error says so.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from visionatrix.errors import ModelFileError

CATALOG_ENTRY = "T5-V1_1-XXL-Tokenizer"
"""The catalog entry whose file is T5's ``tokenizer.json``."""
TOKENIZER_JSON = "tokenizer.json"
SPIECE_MODEL = "spiece.model"


def t5_tokenizer(path_or_dir: str | Path) -> Any:
    """T5's tokenizer from ``tokenizer.json`` / ``spiece.model`` (a file, or a folder holding one); built once per
    path. :class:`ModelFileError` naming :data:`CATALOG_ENTRY` when there is none."""
    return _load(str(Path(path_or_dir).resolve()))


@functools.cache
def _load(location: str) -> Any:
    from transformers import T5Tokenizer

    path = Path(location)
    folder = path if path.is_dir() else path.parent
    json_file = path if path.is_file() and path.name.endswith(".json") else folder / TOKENIZER_JSON
    spiece = path if path.is_file() and path.suffix == ".model" else folder / SPIECE_MODEL
    if json_file.is_file():
        try:  # extra_ids=0: the file's own added tokens (<extra_id_N>) stay; none are added to a vocabulary
            return T5Tokenizer(tokenizer_file=str(json_file), extra_ids=0)
        except Exception as exc:  # tokenizers' parse errors have no common base
            raise ModelFileError(json_file, f"not a T5 tokenizer.json: {exc}") from exc
    if spiece.is_file():
        try:
            return T5Tokenizer.from_pretrained(str(spiece.parent), local_files_only=True, extra_ids=0)
        except Exception as exc:
            raise ModelFileError(spiece, f"cannot read this SentencePiece model without the sentencepiece and "
                                         f"protobuf packages ({exc}); install the catalog's {CATALOG_ENTRY} "
                                         f"({TOKENIZER_JSON}) instead") from exc
    raise ModelFileError(path, f"no T5 tokenizer ({TOKENIZER_JSON} or {SPIECE_MODEL}) here: install the catalog "
                               f"entry {CATALOG_ENTRY}")
