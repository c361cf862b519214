"""HunyuanDiT's two tokenizers from local files, never from the network.

- The "CLIP" (Chinese RoBERTa-wwm-ext-large) tokenizes with BERT's WordPiece: a ``vocab.txt`` (47,020 lines; ``[PAD]``
  0, ``[CLS]`` 101, ``[SEP]`` 102), lower-casing, CJK characters split apart — the file ComfyUI carries as
  ``hydit_clip_tokenizer/vocab.txt`` and Tencent's ``t2i/tokenizer/vocab.txt`` (Apache-2.0). Catalog entry
  :data:`BERT_CATALOG_ENTRY`. ``bert_tokenizer(path)`` takes that file or a folder holding it.
- mT5-XL tokenizes with a SentencePiece Unigram model (google/mt5-xl, Apache-2.0; ``</s>`` 1, ``<pad>`` 0). Catalog
  entry :data:`MT5_CATALOG_ENTRY`: its ``tokenizer.json``. ``mt5_tokenizer(path)`` takes that file or a folder holding
  it (the SentencePiece ``spiece.model`` alone would need the ``sentencepiece``/``protobuf`` packages, which are not
  dependencies). ComfyUI's all-in-one file also carries the SentencePiece model's bytes
  (``text_encoders.mt5xl.spiece_model``): reading those needs the same packages, so the catalog file is used.

Both come back as transformers tokenizers (tokenizers backend), built once per path; a missing file is a
:class:`ModelFileError` naming the catalog entry to install.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from visionatrix.errors import ModelFileError

BERT_CATALOG_ENTRY = "HunyuanDiT-CLIP-Tokenizer"
"""The catalog entry whose file is the Chinese RoBERTa ``vocab.txt``."""
MT5_CATALOG_ENTRY = "mT5-XL-Tokenizer"
"""The catalog entry whose file is mT5's ``tokenizer.json``."""
VOCAB_TXT = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"


def bert_tokenizer(path_or_dir: str | Path) -> Any:
    """The WordPiece tokenizer of a ``vocab.txt`` (a file, or a folder holding one); built once per path."""
    return _bert(str(Path(path_or_dir).resolve()))


def mt5_tokenizer(path_or_dir: str | Path) -> Any:
    """mT5's tokenizer from its ``tokenizer.json`` (a file, or a folder holding one); built once per path."""
    return _mt5(str(Path(path_or_dir).resolve()))


@functools.cache
def _bert(location: str) -> Any:
    from transformers import BertTokenizer

    path = Path(location)
    vocab_file = path / VOCAB_TXT if path.is_dir() else path
    if not vocab_file.is_file():
        raise ModelFileError(path, f"no HunyuanDiT CLIP tokenizer ({VOCAB_TXT}) here: install the catalog entry "
                                   f"{BERT_CATALOG_ENTRY}")
    lines = vocab_file.read_text(encoding="utf-8").splitlines()
    vocab = {token: index for index, token in enumerate(lines)}
    missing = [token for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if token not in vocab]
    if missing:
        raise ModelFileError(vocab_file, f"not a BERT vocab.txt: no {', '.join(missing)} token "
                                         f"({len(lines)} lines); install the catalog entry {BERT_CATALOG_ENTRY}")
    # vocab= (not vocab_file=): transformers 5 builds the WordPiece model from the dictionary it is given
    return BertTokenizer(vocab=vocab, do_lower_case=True, tokenize_chinese_chars=True)


@functools.cache
def _mt5(location: str) -> Any:
    from transformers import T5Tokenizer

    path = Path(location)
    json_file = path / TOKENIZER_JSON if path.is_dir() else path
    if not json_file.is_file() or json_file.suffix != ".json":
        raise ModelFileError(path, f"no mT5 tokenizer ({TOKENIZER_JSON}) here: install the catalog entry "
                                   f"{MT5_CATALOG_ENTRY}")
    try:  # extra_ids=0: the file's own added tokens stay; none are added to the vocabulary
        return T5Tokenizer(tokenizer_file=str(json_file), extra_ids=0)
    except Exception as exc:  # tokenizers' parse errors have no common base
        raise ModelFileError(json_file, f"not an mT5 tokenizer.json: {exc}") from exc
