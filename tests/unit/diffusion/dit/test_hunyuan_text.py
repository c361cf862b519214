"""HunyuanDiT prompts: local tokenizers and ComfyUI's encoding through the BERT "CLIP" and mT5."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import hunyuan_fixtures, sd3_fixtures
from visionatrix.diffusion.dit import hunyuan_dit, hunyuan_dit_text
from visionatrix.diffusion.text import hunyuan_tokenizers
from visionatrix.errors import ModelFileError


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, hunyuan_fixtures.TinyHunyuan]:
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    info = hunyuan_dit.detect_hunyuan_dit({key: tuple(value.shape) for key, value in tiny.state_dict.items()})
    encoders = hunyuan_dit_text.build_hunyuan_text_encoders(tiny.state_dict, info)
    folder = tmp_path_factory.mktemp("tokenizers")
    tokenizers = {"hydit_clip": hunyuan_tokenizers.bert_tokenizer(hunyuan_fixtures.write_bert_vocab(folder / "bert")),
                  "mt5xl": hunyuan_tokenizers.mt5_tokenizer(sd3_fixtures.write_tokenizer(folder / "mt5"))}
    return encoders, tokenizers, tiny


def test_bert_tokenizer_reads_the_local_vocab(tmp_path: Path) -> None:
    tokenizer = hunyuan_tokenizers.bert_tokenizer(hunyuan_fixtures.write_bert_vocab(tmp_path).parent)

    assert tokenizer("A photo of cats, 红色 zz")["input_ids"] == [2, 5, 6, 7, 8, 9, 17, 18, 19, 1, 3]


@pytest.mark.parametrize(("load", "entry"), [(hunyuan_tokenizers.bert_tokenizer, "HunyuanDiT-CLIP-Tokenizer"),
                                             (hunyuan_tokenizers.mt5_tokenizer, "mT5-XL-Tokenizer")])
def test_missing_tokenizer_names_its_catalog_entry(tmp_path: Path, load, entry: str) -> None:
    with pytest.raises(ModelFileError, match=entry):
        load(tmp_path)


def test_vocab_without_bert_specials_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"not a BERT vocab.txt: no \[PAD\]"):
        hunyuan_tokenizers.bert_tokenizer(tmp_path)


def test_encoding_equals_the_padded_and_masked_reference(setup) -> None:
    """As diffusers' HunyuanDiT pipeline encodes an unweighted prompt: BERT to 77, mT5 to 256, with masks."""
    encoders, tokenizers, tiny = setup
    text = "a photo of cats on the table"

    conds = hunyuan_dit_text.encode_hunyuan(encoders, tokenizers, text)

    references = []
    for name, length in (("hydit_clip", 77), ("mt5xl", 256)):
        batch = tokenizers[name](text, padding="max_length", max_length=length, return_tensors="pt")
        with torch.no_grad():
            hidden = tiny.components[name](input_ids=batch["input_ids"],
                                           attention_mask=batch["attention_mask"]).last_hidden_state
        references.append((hidden, batch["attention_mask"]))
    (bert, bert_mask), (mt5, mt5_mask) = references
    assert conds["encoder_hidden_states"].shape == (1, 77, 64)
    assert conds["encoder_hidden_states_t5"].shape == (1, 256, 512)
    assert torch.equal(conds["text_embedding_mask"], bert_mask)
    assert torch.equal(conds["text_embedding_mask_t5"], mt5_mask)
    assert int(bert_mask.sum()) == 10  # [CLS] a photo of cat ##s on the table [SEP]
    torch.testing.assert_close(conds["encoder_hidden_states"], bert, rtol=0, atol=1e-5)
    torch.testing.assert_close(conds["encoder_hidden_states_t5"], mt5, rtol=0, atol=1e-5)


def test_weighted_words_move_away_from_the_empty_prompt(setup) -> None:
    encoders, tokenizers, _ = setup
    plain = hunyuan_dit_text.encode_hunyuan(encoders, tokenizers, "a red dog")
    weighted = hunyuan_dit_text.encode_hunyuan(encoders, tokenizers, "a (red:1.5) dog")

    bert = encoders["hydit_clip"]
    empty_ids = torch.zeros(1, 77, dtype=torch.long)
    empty_ids[0, :2] = torch.tensor([2, 3])
    with torch.no_grad():
        empty = bert(input_ids=empty_ids, attention_mask=(torch.arange(77) < 2).long()[None]).last_hidden_state
    expected = plain["encoder_hidden_states"].clone()
    expected[0, 2] = empty[0, 2] + (expected[0, 2] - empty[0, 2]) * 1.5  # [CLS] a red: position 2
    torch.testing.assert_close(weighted["encoder_hidden_states"], expected, rtol=0, atol=1e-5)
    assert not torch.allclose(weighted["encoder_hidden_states_t5"], plain["encoder_hidden_states_t5"])


def test_long_prompt_is_not_cut(setup) -> None:
    encoders, tokenizers, _ = setup
    conds = hunyuan_dit_text.encode_hunyuan(encoders, tokenizers, " ".join(["red dog"] * 50))

    assert conds["encoder_hidden_states"].shape[1] == 102  # [CLS] + 100 + [SEP]
    assert conds["text_embedding_mask"].sum() == 102
    assert conds["encoder_hidden_states_t5"].shape[1] == 256


def test_mt5_tokenizer_from_the_checkpoints_spiece_model_equals_the_tokenizer_json(setup) -> None:
    _, tokenizers, tiny = setup
    from_file = hunyuan_tokenizers.mt5_tokenizer_from_spiece(tiny.state_dict["text_encoders.mt5xl.spiece_model"])

    for text in ("a photo of the cat", "red  dog on a blue sky", "catdog xyz", "  the   table "):
        assert from_file(text, add_special_tokens=False)["input_ids"] == \
            tokenizers["mt5xl"](text, add_special_tokens=False)["input_ids"]
    assert hunyuan_dit_text.tokenize_mt5(from_file, "a (red:1.2) dog") == \
        hunyuan_dit_text.tokenize_mt5(tokenizers["mt5xl"], "a (red:1.2) dog")


def test_garbage_spiece_model_is_refused() -> None:
    with pytest.raises(ModelFileError, match="not a SentencePiece model"):
        hunyuan_tokenizers.mt5_tokenizer_from_spiece(b"\x0a\xff\xff\xff\x0f", "bad.safetensors")
    with pytest.raises(ModelFileError, match="not a Unigram SentencePiece model"):
        hunyuan_tokenizers.mt5_tokenizer_from_spiece(b"", "empty.safetensors")
