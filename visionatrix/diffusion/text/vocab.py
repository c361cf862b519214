"""CLIP's tokenizer, offline: the BPE vocabulary of OpenAI's CLIP (``bpe_simple_vocab_16e6.txt.gz``, as open_clip
ships it, MIT licence beside it) turned into the vocabulary and merges that ``transformers.CLIPTokenizer`` takes.

CLIP-L (SD1, SDXL's first encoder) and OpenCLIP ViT-bigG (SD2, SDXL's second) share this vocabulary of 49,408
tokens; they differ in the padding token: CLIP-L pads with ``<|endoftext|>`` (49407), bigG with ``!`` (0). The
vocabulary is built once per process (about 0.3 s), never downloaded.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

BPE_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
VOCAB_SIZE = 49408
MERGES = VOCAB_SIZE - 2 * 256 - 2
"""The merges CLIP uses: the vocabulary is the 256 byte symbols, the same with ``</w>``, one token per merge and
the two special tokens."""
START, END = "<|startoftext|>", "<|endoftext|>"
PAD_TOKENS = {"clip_l": END, "clip_g": "!"}


@functools.cache
def vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(token → id, merges)`` of CLIP's BPE, from the shipped file."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = [(first, second) for first, second in (line.split() for line in lines[1:MERGES + 1])]
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(symbol + "</w>" for symbol in symbols), *("".join(pair) for pair in merges), START, END]
    if len(tokens) != VOCAB_SIZE:
        raise RuntimeError(f"{BPE_FILE} gave {len(tokens)} tokens, CLIP has {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}, merges


@functools.cache
def clip_tokenizer(kind: str = "clip_l") -> Any:
    """A ``transformers.CLIPTokenizer`` on CLIP's vocabulary; ``kind`` picks the padding: ``clip_l`` (SD1, SDXL's
    CLIP-L) or ``clip_g`` (OpenCLIP bigG / ViT-H: SD2, SDXL's second encoder)."""
    if kind not in PAD_TOKENS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: expected one of {', '.join(PAD_TOKENS)}")
    from transformers.models.clip.tokenization_clip import CLIPTokenizer

    vocab, merges = vocabulary()
    pairs: Any = list(merges)  # the BPE model takes (first, second) pairs; the signature only says strings
    return CLIPTokenizer(vocab=dict(vocab), merges=pairs, pad_token=PAD_TOKENS[kind])
