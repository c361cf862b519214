"""Prompts through tiny random-weight CLIP text encoders (transformers' own classes): the family's layer, ComfyUI's
weighting against the empty prompt, long prompts side by side, textual-inversion vectors, the pooled output —
each checked against the encoder called directly."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from visionatrix.diffusion.text.chunks import tokenize_prompt
from visionatrix.diffusion.text.encode import LAYERS, EncoderLayer, encode_chunks, encode_prompt
from visionatrix.diffusion.text.vocab import clip_tokenizer


def _config(**extra: object) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                          eos_token_id=49407, pad_token_id=1, **extra)


@pytest.fixture(scope="module")
def clip_l() -> CLIPTextModel:
    torch.manual_seed(0)
    return CLIPTextModel(_config()).eval()


@pytest.fixture(scope="module")
def clip_g() -> CLIPTextModelWithProjection:
    torch.manual_seed(1)
    return CLIPTextModelWithProjection(_config(projection_dim=24)).eval()


def _ids(text: str, kind: str = "clip_l") -> torch.Tensor:
    return torch.tensor([[token for token, _ in tokenize_prompt(text, kind)[0]]])


@torch.no_grad()
def test_sd1_takes_the_last_normed_layer_and_sdxl_the_penultimate_raw_one(clip_l: CLIPTextModel) -> None:
    direct = clip_l(input_ids=_ids("a red fox"), output_hidden_states=True)
    sd1 = encode_prompt(clip_l, "a red fox", LAYERS["sd1"])
    torch.testing.assert_close(sd1.cond, direct.last_hidden_state)
    sdxl = encode_prompt(clip_l, "a red fox", LAYERS["sdxl"])
    torch.testing.assert_close(sdxl.cond, direct.hidden_states[-2])
    sd2 = encode_prompt(clip_l, "a red fox", LAYERS["sd2"])
    torch.testing.assert_close(sd2.cond, clip_l.final_layer_norm(direct.hidden_states[-2]))
    assert not torch.allclose(sd1.cond, sdxl.cond)
    skipped = encode_prompt(clip_l, "a red fox", LAYERS["sd1"].at(-2))
    torch.testing.assert_close(skipped.cond, clip_l.final_layer_norm(direct.hidden_states[-2]))
    with pytest.raises(ValueError, match="counted from the end"):
        LAYERS["sd1"].at(1)


@torch.no_grad()
def test_weights_scale_each_token_away_from_the_empty_prompt(clip_l: CLIPTextModel) -> None:
    layer = LAYERS["sd1"]
    plain = clip_l(input_ids=_ids("a red fox")).last_hidden_state
    empty = clip_l(input_ids=_ids("")).last_hidden_state
    weighted = encode_prompt(clip_l, "a (red:1.5) fox", layer).cond
    red = clip_tokenizer()("red", add_special_tokens=False)["input_ids"][0]
    weights = torch.tensor([1.5 if token == red else 1.0 for token in _ids("a red fox")[0].tolist()])
    torch.testing.assert_close(weighted, empty + (plain - empty) * weights[None, :, None])
    assert encode_prompt(clip_l, "a red fox", layer).cond.equal(plain), "no weights: the encoder's output as is"


@torch.no_grad()
def test_a_long_prompt_is_its_chunks_side_by_side(clip_l: CLIPTextModel) -> None:
    text = ", ".join(["a misty mountain lake at dawn with pine trees"] * 12)
    chunks = tokenize_prompt(text)
    assert len(chunks) >= 2
    encoded = encode_chunks(clip_l, chunks, LAYERS["sd1"])
    assert encoded.cond.shape == (1, 77 * len(chunks), 32)
    for index, chunk in enumerate(chunks):
        alone = clip_l(input_ids=torch.tensor([[token for token, _ in chunk]])).last_hidden_state
        torch.testing.assert_close(encoded.cond[:, 77 * index:77 * (index + 1)], alone)


@torch.no_grad()
def test_textual_inversion_vectors_replace_their_slots(clip_l: CLIPTextModel) -> None:
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    got = encode_prompt(clip_l, "a embedding:style fox", LAYERS["sd1"], embeddings={"style": vectors}).cond
    reference_model = CLIPTextModel(_config()).eval()
    reference_model.load_state_dict(clip_l.state_dict())
    spare = [100, 101]  # two token ids given the embedding's vectors in a copy of the encoder
    reference_model.embeddings.token_embedding.weight[spare] = vectors
    fox = clip_tokenizer()("fox", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[49406, 320, *spare, *fox, 49407] + [49407] * (77 - 5 - len(fox))])
    torch.testing.assert_close(got, reference_model(input_ids=ids).last_hidden_state)
    with pytest.raises(ValueError, match="takes 32"):
        encode_prompt(clip_l, "embedding:wide", LAYERS["sd1"], embeddings={"wide": torch.zeros(1, 48)})


@torch.no_grad()
def test_the_pooled_output_is_the_projected_end_of_text_of_the_first_chunk(
        clip_g: CLIPTextModelWithProjection) -> None:
    encoded = encode_prompt(clip_g, "a red fox", LAYERS["sdxl"], kind="clip_g")
    direct = clip_g(input_ids=_ids("a red fox", "clip_g"), output_hidden_states=True)
    torch.testing.assert_close(encoded.pooled, direct.text_embeds)
    torch.testing.assert_close(encoded.cond, direct.hidden_states[-2])
    assert encoded.pooled is not None and encoded.pooled.shape == (1, 24)
    assert EncoderLayer(-2, False) == LAYERS["sdxl"]
