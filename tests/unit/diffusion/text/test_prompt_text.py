"""Prompt text for CLIP: the shipped vocabulary gives CLIP's token ids, ComfyUI's weight syntax, and long prompts
split into 77-token chunks without losing a word or its weight."""

from __future__ import annotations

import pytest

from visionatrix.diffusion.text.chunks import EmbeddingSlot, tokenize_prompt
from visionatrix.diffusion.text.vocab import VOCAB_SIZE, clip_tokenizer, vocabulary
from visionatrix.diffusion.text.weights import parse_weights

START, END = 49406, 49407


def test_the_vocabulary_is_clips_and_gives_its_well_known_ids() -> None:
    vocab, merges = vocabulary()
    assert len(vocab) == VOCAB_SIZE and len(merges) == 48894
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"], vocab["!"]) == (START, END, 0)
    tokenizer = clip_tokenizer("clip_l")
    assert tokenizer("a photo of a cat")["input_ids"] == [START, 320, 1125, 539, 320, 2368, END]
    assert tokenizer("A  PHOTO of a Cat")["input_ids"] == [START, 320, 1125, 539, 320, 2368, END], "lower case"
    assert (clip_tokenizer("clip_l").pad_token_id, clip_tokenizer("clip_g").pad_token_id) == (END, 0)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        clip_tokenizer("t5")


@pytest.mark.parametrize(("text", "expected"), [
    ("a cat", [("a cat", 1.0)]),
    ("(a cat)", [("a cat", 1.1)]),
    ("((a)) b", [("a", 1.1 * 1.1), (" b", 1.0)]),
    ("x (a (b:2)) y", [("x ", 1.0), ("a ", 1.1), ("b", 2.2), (" y", 1.0)]),
    ("(a (b):1.5)", [("a ", 1.5), ("b", 1.5 * 1.1)]),
    (r"\(x\) (y:0.5)", [("(x) ", 1.0), ("y", 0.5)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    ("(unclosed a", [("(unclosed a", 1.0)]),
    ("a) b", [("a) b", 1.0)]),
    ("(time: noon)", [("time: noon", 1.1)]),
    ("(a:.5)(b:0.5)", [("ab", 0.5)]),
    ("", [("", 1.0)]),
])
def test_weights_follow_comfyuis_syntax(text: str, expected: list[tuple[str, float]]) -> None:
    got = parse_weights(text)
    assert [piece for piece, _ in got] == [piece for piece, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected])


def test_a_short_prompt_is_one_padded_chunk_with_its_weights() -> None:
    (chunk,) = tokenize_prompt("a (cat:1.5), blue")
    tokens = [token for token, _ in chunk]
    assert len(chunk) == 77 and tokens[0] == START
    reference = clip_tokenizer("clip_l")("a cat, blue")["input_ids"]
    assert tokens[:len(reference)] == reference and set(tokens[len(reference):]) == {END}
    assert [weight for token, weight in chunk if token == 2368] == [1.5]
    assert {weight for token, weight in chunk if token != 2368} == {1.0}


def test_an_empty_prompt_is_start_end_and_padding_per_encoder() -> None:
    (chunk_l,) = tokenize_prompt("")
    (chunk_g,) = tokenize_prompt("", "clip_g")
    assert [t for t, _ in chunk_l] == [START] + [END] * 76
    assert [t for t, _ in chunk_g] == [START, END] + [0] * 75


def test_a_long_prompt_takes_several_chunks_and_keeps_every_word_whole() -> None:
    words = [f"{colour} {thing}," for colour in ("red", "green", "golden", "misty") for thing in
             ("mountain", "river", "forest", "lighthouse", "meadow", "harbour", "cathedral", "canyon")] * 3
    text = " ".join(words)
    chunks = tokenize_prompt(text)
    assert len(chunks) > 2 and all(len(chunk) == 77 for chunk in chunks)
    contents = []
    for chunk in chunks:
        tokens = [token for token, _ in chunk]
        assert tokens[0] == START
        body = tokens[1:tokens.index(END)]
        assert len(body) <= 75 and set(tokens[tokens.index(END):]) == {END}
        contents.append(body)
    tokenizer = clip_tokenizer("clip_l")
    assert [t for body in contents for t in body] == tokenizer(text, add_special_tokens=False)["input_ids"]
    word_ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in text.split()]
    boundaries, position = set(), 0
    for ids in word_ids:
        boundaries.add(position)
        position += len(ids)
    starts, position = [], 0
    for body in contents:
        starts.append(position)
        position += len(body)
    assert set(starts) <= boundaries, "a chunk starts in the middle of a word"


def test_a_word_longer_than_half_a_chunk_is_split_where_the_chunk_ends() -> None:
    long_word = "x" * 300  # one "word" of many tokens
    chunks = tokenize_prompt(f"a {long_word}")
    bodies = [[t for t, _ in chunk][1:] for chunk in chunks]
    assert len(bodies[0]) == 76 and END not in bodies[0][:75], "the first chunk is filled to the end"


def test_embeddings_take_their_vectors_slots_and_weight() -> None:
    (chunk,) = tokenize_prompt("a (embedding:style:1.2), cat",
                               embedding_size=lambda name: 2 if name == "style" else None)
    slots = [(token, weight) for token, weight in chunk if isinstance(token, EmbeddingSlot)]
    assert slots == [(EmbeddingSlot("style", 0), 1.2), (EmbeddingSlot("style", 1), 1.2)]
    (unknown,) = tokenize_prompt("embedding:nothing", embedding_size=lambda name: None)
    assert not any(isinstance(token, EmbeddingSlot) for token, _ in unknown), "an unknown embedding is text"
