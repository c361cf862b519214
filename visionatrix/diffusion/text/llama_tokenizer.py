"""LLaMA's SentencePiece tokenizer (the vocabulary of Pile-T5, AuraFlow's text encoder) from a local file, never
from the network.

No installed package ships it: it is a catalog download installed like a model (``CATALOG_ENTRY``: the
``tokenizer.json`` of AuraFlow's ``tokenizer`` folder, LLaMA's 32,000-token vocabulary, the one ComfyUI carries as
``t5_pile_tokenizer``). ``llama_tokenizer(path)`` takes that file, or a folder holding ``tokenizer.json``
(preferred) or ``tokenizer.model``, and builds a transformers tokenizer that follows the file's own pipeline
(``PreTrainedTokenizerFast``); a ``tokenizer.model`` alone needs the ``sentencepiece``/``protobuf`` packages, which
are not dependencies: then the error says so. Ids: ``<unk>`` 0, ``<s>`` 1 (AuraFlow's padding), ``</s>`` 2 (end).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from visionatrix.errors import ModelFileError

CATALOG_ENTRY = "Pile-T5-LLaMA-Tokenizer"
"""The catalog entry whose file is the LLaMA ``tokenizer.json`` AuraFlow's Pile-T5 reads."""
TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"


def llama_tokenizer(path_or_dir: str | Path) -> Any:
    """LLaMA's tokenizer from ``tokenizer.json`` / ``tokenizer.model`` (a file, or a folder holding one); built once
    per path. :class:`ModelFileError` naming :data:`CATALOG_ENTRY` when there is none."""
    return _load(str(Path(path_or_dir).resolve()))


@functools.cache
def _load(location: str) -> Any:
    from transformers import PreTrainedTokenizerFast

    path = Path(location)
    folder = path if path.is_dir() else path.parent
    json_file = path if path.is_file() and path.name.endswith(".json") else folder / TOKENIZER_JSON
    model_file = path if path.is_file() and path.suffix == ".model" else folder / SENTENCEPIECE_MODEL
    if json_file.is_file():
        try:
            return PreTrainedTokenizerFast(tokenizer_file=str(json_file), unk_token="<unk>", bos_token="<s>",
                                           eos_token="</s>")
        except Exception as exc:  # tokenizers' parse errors have no common base
            raise ModelFileError(json_file, f"not a LLaMA tokenizer.json: {exc}") from exc
    if model_file.is_file():
        try:
            from transformers import LlamaTokenizer

            return LlamaTokenizer.from_pretrained(str(model_file.parent), local_files_only=True)
        except Exception as exc:
            raise ModelFileError(model_file, f"cannot read this SentencePiece model without the sentencepiece and "
                                             f"protobuf packages ({exc}); install the catalog's {CATALOG_ENTRY} "
                                             f"({TOKENIZER_JSON}) instead") from exc
    raise ModelFileError(path, f"no LLaMA tokenizer ({TOKENIZER_JSON} or {SENTENCEPIECE_MODEL}) here: install the "
                               f"catalog entry {CATALOG_ENTRY}")
