"""HunyuanDiT's two tokenizers from local files, never from the network.

- The "CLIP" (Chinese RoBERTa-wwm-ext-large) tokenizes with BERT's WordPiece: a ``vocab.txt`` (47,020 lines; ``[PAD]``
  0, ``[CLS]`` 101, ``[SEP]`` 102), lower-casing, CJK characters split apart — the file ComfyUI carries as
  ``hydit_clip_tokenizer/vocab.txt`` and Tencent's ``t2i/tokenizer/vocab.txt`` (Apache-2.0). Catalog entry
  :data:`BERT_CATALOG_ENTRY`. ``bert_tokenizer(path)`` takes that file or a folder holding it.
- mT5-XL tokenizes with a SentencePiece Unigram model (google/mt5-xl, Apache-2.0; ``</s>`` 1, ``<pad>`` 0). Catalog
  entry :data:`MT5_CATALOG_ENTRY`: its ``tokenizer.json``. ``mt5_tokenizer(path)`` takes that file or a folder holding
  it. ComfyUI's all-in-one file also carries the SentencePiece model itself, as a uint8 tensor of its serialized
  ``ModelProto`` (``text_encoders.mt5xl.spiece_model``; ComfyUI reads the tokenizer from there and nowhere else):
  ``mt5_tokenizer_from_spiece(data)`` builds the same tokenizer from those bytes without the ``sentencepiece`` or
  ``protobuf`` packages (not dependencies): a small reader of the protobuf fields SentencePiece uses (pieces with
  scores and types, the normalizer's precompiled character map, the unknown id) feeds a ``tokenizers`` Unigram with
  SentencePiece's normalisation (the character map, outer spaces stripped, runs of spaces collapsed) and its
  ``▁`` word prefix.

Both come back as transformers tokenizers (tokenizers backend), built once per path; a missing file is a
:class:`ModelFileError` naming the catalog entry to install.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
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


SPIECE_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}
"""SentencePiece's piece types (``ModelProto.SentencePiece.Type``)."""
UNIGRAM = 1
"""``TrainerSpec.model_type`` of a Unigram model (mT5's, T5's); BPE (2) and others are refused."""


def mt5_tokenizer_from_spiece(data: bytes | Any, source: object = "text_encoders.mt5xl.spiece_model") -> Any:
    """mT5's tokenizer from a serialized SentencePiece ``ModelProto`` (bytes, or the uint8 tensor ComfyUI stores);
    :class:`ModelFileError` naming ``source`` when the bytes are not a Unigram SentencePiece model."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5Tokenizer

    raw = bytes(data.cpu().numpy().tobytes()) if hasattr(data, "numpy") else bytes(data)
    try:
        pieces, trainer, normalizer = _read_model_proto(raw)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ModelFileError(source, f"not a SentencePiece model ({len(raw)} bytes): {exc}") from exc
    if not pieces or trainer.get(3, UNIGRAM) != UNIGRAM:
        raise ModelFileError(source, f"not a Unigram SentencePiece model ({len(pieces)} pieces, model type "
                                     f"{trainer.get(3, UNIGRAM)})")
    unknown = [index for index, (_, _, kind) in enumerate(pieces) if kind == 2]
    tokenizer = Tokenizer(models.Unigram([(piece, score) for piece, score, _ in pieces],
                                         unk_id=unknown[0] if unknown else trainer.get(40, 0),
                                         byte_fallback=bool(trainer.get(35, 0))))
    steps = [normalizers.Precompiled(normalizer[2])] if normalizer.get(2) else []
    if normalizer.get(4, 1):  # remove_extra_whitespaces (default true)
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    tokenizer.normalizer = normalizers.Sequence(steps)
    prepend = "always" if normalizer.get(3, 1) else "never"  # add_dummy_prefix (default true)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=prepend)
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=prepend)
    specials = [piece for piece, _, kind in pieces if kind in (2, 3)]
    tokenizer.add_special_tokens(specials)
    return T5Tokenizer(tokenizer_object=tokenizer, extra_ids=0)


def _read_model_proto(data: bytes) -> tuple[list[tuple[str, float, int]], dict[int, Any], dict[int, Any]]:
    """``ModelProto``: pieces (field 1: piece 1, score 2, type 3), trainer spec (2) and normalizer spec (3) fields."""
    pieces: list[tuple[str, float, int]] = []
    trainer: dict[int, Any] = {}
    normalizer: dict[int, Any] = {}
    for number, value in _fields(data):
        if number == 1:
            piece = dict(_fields(value))
            score = struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0
            pieces.append((piece.get(1, b"").decode("utf-8"), score, int(piece.get(3, 1))))
        elif number == 2:
            trainer = dict(_fields(value))
        elif number == 3:
            normalizer = dict(_fields(value))
    return pieces, trainer, normalizer


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """``(field number, value)`` of one protobuf message: varints as ints, length-delimited and fixed-width values as
    bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position:position + length], position + length
            if position > len(data):
                raise ValueError("truncated field")
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = data[position:position + size], position + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
