"""AuraFlow's Pile-T5 text encoder from its file, the LLaMA tokenizer from a local file, and prompts encoded as
ComfyUI's AuraFlow text encoder does (per-word tokens, end 2, padding 1 to 256, masked attention, zeroed padding)."""

from __future__ import annotations

import pytest
import torch

from tests import auraflow_fixtures
from visionatrix.diffusion.dit import auraflow
from visionatrix.diffusion.text.llama_tokenizer import CATALOG_ENTRY, llama_tokenizer
from visionatrix.errors import ModelFileError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def original():
    return auraflow_fixtures.cached_checkpoint(all_in_one=True).components["pile_t5xl"]


@pytest.fixture(scope="module")
def encoder():
    return auraflow.build_auraflow_text_encoder(auraflow_fixtures.cached_checkpoint(all_in_one=True).state_dict,
                                                "auraflow_v03.safetensors")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return llama_tokenizer(auraflow_fixtures.write_tokenizer(tmp_path_factory.mktemp("llama")))


def _hidden(model, ids, mask=None):
    with torch.no_grad():
        mask = None if mask is None else torch.tensor([mask])
        return model(input_ids=torch.tensor([ids]), attention_mask=mask).last_hidden_state


def test_all_in_one_pile_t5_is_a_umt5_encoder_that_encodes_what_the_original_encodes(encoder, original):
    from transformers import UMT5EncoderModel

    assert isinstance(encoder, UMT5EncoderModel)
    config = encoder.config
    assert (config.d_model, config.num_heads, config.d_kv, config.d_ff, config.num_layers, config.vocab_size) == \
        (64, 2, 32, 96, 2, 48)
    assert encoder.encoder.embed_tokens.weight is encoder.shared.weight
    ids, mask = [5, 9, 13, 2, 1, 1], [1, 1, 1, 1, 0, 0]
    torch.testing.assert_close(_hidden(encoder, ids, mask), _hidden(original, ids, mask), atol=1e-5, rtol=1e-5)


def test_a_t5_with_one_relative_bias_becomes_a_t5_encoder():
    from transformers import T5EncoderModel

    from tests import sd3_fixtures

    weights = sd3_fixtures.t5_file_weights(sd3_fixtures.build_t5())
    assert isinstance(auraflow.build_auraflow_text_encoder(weights, "t5.safetensors"), T5EncoderModel)
    with pytest.raises(ModelFileError, match=r"no Pile-T5 text encoder.*under model: 1"):
        auraflow.build_auraflow_text_encoder({"model.x": torch.zeros(1)}, "x.safetensors")


def test_tokenizer_comes_from_a_local_file_or_folder(tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(*_args, **_kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    path = auraflow_fixtures.write_tokenizer(tmp_path / "tok")
    for location in (path, path.parent):
        tokenizer = llama_tokenizer(location)
        assert tokenizer("a photo of a cat", add_special_tokens=False)["input_ids"] == [4, 5, 6, 4, 7]
        assert tokenizer("cat", add_special_tokens=False)["input_ids"] == [7]
    with pytest.raises(ModelFileError, match=f"no LLaMA tokenizer .*install the catalog entry {CATALOG_ENTRY}"):
        llama_tokenizer(tmp_path / "nothing_here")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelFileError, match=r"not a LLaMA tokenizer\.json"):
        llama_tokenizer(tmp_path / "broken")


def test_tokens_are_per_word_closed_by_2_and_padded_with_1_to_256(tokenizer):
    tokens = auraflow.tokenize_auraflow(tokenizer, "a photo\nof  (red:1.5) cat")
    assert tokens[:7] == [(4, 1.0), (5, 1.0), (6, 1.0), (8, 1.5), (7, 1.0), (2, 1.0), (1, 1.0)]
    assert len(tokens) == 256 and set(tokens[6:]) == {(1, 1.0)}
    assert auraflow.tokenize_auraflow(tokenizer, "") == [(2, 1.0)] + [(1, 1.0)] * 255
    assert len(auraflow.tokenize_auraflow(tokenizer, " ".join(["cat"] * 300))) == 301


def test_encoding_attends_up_to_the_end_token_and_zeroes_the_padding(encoder, tokenizer):
    got = auraflow.encode_auraflow(encoder, tokenizer, "a photo of a cat", min_length=10)
    ids = [4, 5, 6, 4, 7, 2, 1, 1, 1, 1]
    expected = _hidden(encoder, ids, [1] * 6 + [0] * 4)
    assert got.shape == (1, 10, 64)
    torch.testing.assert_close(got[:, :6], expected[:, :6])
    assert torch.equal(got[:, 6:], torch.zeros(1, 4, 64))
    assert not torch.allclose(got[:, :6], _hidden(encoder, ids)[:, :6], atol=1e-4)  # the mask matters
    assert auraflow.encode_auraflow(encoder, tokenizer, "a cat").shape == (1, 256, 64)


def test_weights_interpolate_from_the_empty_prompt_as_comfyui(encoder, tokenizer):
    got = auraflow.encode_auraflow(encoder, tokenizer, "a (red cat:1.5) on (the:0.5) table", min_length=10)
    ids = [4, 8, 7, 10, 11, 12, 2, 1, 1, 1]
    weights = torch.tensor([1, 1.5, 1.5, 1, 0.5, 1, 1, 1, 1, 1])[None, :, None]
    plain = _hidden(encoder, ids, [1] * 7 + [0] * 3) * torch.tensor([1] * 7 + [0] * 3)[None, :, None]
    empty = _hidden(encoder, [2] + [1] * 9, [1] + [0] * 9) * torch.tensor([1] + [0] * 9)[None, :, None]
    torch.testing.assert_close(got, empty + (plain - empty) * weights)
    assert not torch.allclose(got, plain)
