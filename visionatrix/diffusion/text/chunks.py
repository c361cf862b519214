"""A prompt as CLIP reads it: weighted tokens in chunks of 77 (start, 75 tokens, end, padding), as many chunks as
the prompt needs (an encoder then encodes each chunk and joins them: prompts longer than 77 tokens work).

Each weighted piece of ``parse_weights`` is split into words at whitespace and each word tokenized on its own, so a
word never loses its weight. A word that does not fit in what is left of a chunk starts the next chunk, unless it is
longer than half a chunk (then it is split where the chunk ends). ``embedding:NAME`` (a textual inversion) stands for
that embedding's vectors: ``embedding_size(NAME)`` says how many (None: an unknown embedding, read as plain text);
they take one slot each (:class:`EmbeddingSlot`) and the word's weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from visionatrix.diffusion.text.vocab import clip_tokenizer
from visionatrix.diffusion.text.weights import parse_weights

MAX_LENGTH = 77
EMBEDDING_PREFIX = "embedding:"


@dataclass(frozen=True)
class EmbeddingSlot:
    """The ``index``-th vector of the textual-inversion embedding ``name``."""

    name: str
    index: int


Token = int | EmbeddingSlot
Chunk = list[tuple[Token, float]]


def _words(kind: str, text: str, weight: float,
           embedding_size: Callable[[str], int | None] | None) -> list[list[tuple[Token, float]]]:
    tokenizer = clip_tokenizer(kind)
    words: list[list[tuple[Token, float]]] = []
    for word in text.split():
        if word.startswith(EMBEDDING_PREFIX) and embedding_size is not None:
            name = word[len(EMBEDDING_PREFIX):].rstrip(",.;")
            size = embedding_size(name)
            if size:
                words.append([(EmbeddingSlot(name, index), weight) for index in range(size)])
                rest = word[len(EMBEDDING_PREFIX) + len(name):]
                if rest:
                    words.append([(token, weight) for token in tokenizer.encode(rest, add_special_tokens=False)])
                continue
        ids = tokenizer.encode(word, add_special_tokens=False)
        if ids:
            words.append([(token, weight) for token in ids])
    return words


def tokenize_prompt(text: str, kind: str = "clip_l", *, max_length: int = MAX_LENGTH,
                    embedding_size: Callable[[str], int | None] | None = None) -> list[Chunk]:
    """The prompt's weighted tokens in chunks of ``max_length`` (see the module docstring); at least one chunk."""
    tokenizer = clip_tokenizer(kind)
    start, end, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    room = max_length - 2
    chunks: list[list[tuple[Token, float]]] = [[]]
    for piece, weight in parse_weights(text):
        for word in _words(kind, piece, weight, embedding_size):
            current = chunks[-1]
            if len(current) + len(word) > room and len(word) <= room // 2:
                chunks.append([])
                current = chunks[-1]
            while len(current) + len(word) > room:
                free = room - len(current)
                current.extend(word[:free])
                word = word[free:]
                chunks.append([])
                current = chunks[-1]
            current.extend(word)
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()
    return [[(start, 1.0), *content, (end, 1.0)] + [(pad, 1.0)] * (room - len(content)) for content in chunks]
