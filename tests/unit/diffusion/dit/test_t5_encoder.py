"""T5 text encoders from their files, T5's tokenizer from a local file, and prompts encoded as ComfyUI does."""

from __future__ import annotations

import copy

import pytest
import torch

from tests import sd3_fixtures
from visionatrix.diffusion.dit import t5
from visionatrix.diffusion.text.t5_tokenizer import CATALOG_ENTRY, t5_tokenizer
from visionatrix.errors import ModelFileError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def original():
    return sd3_fixtures.build_t5()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return t5_tokenizer(sd3_fixtures.write_tokenizer(tmp_path_factory.mktemp("t5_tokenizer")).parent)


def _hidden(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state


IDS = [5, 9, 13, 3, 40, 1, 0, 0]


@pytest.mark.parametrize("prefix", ["", "text_encoders.t5xxl.transformer."])
def test_built_t5_encodes_what_the_original_encodes(original, prefix):
    weights = {prefix + key: value for key, value in sd3_fixtures.t5_file_weights(original).items()}
    if prefix:  # an all-in-one file: other components beside it
        weights["model.diffusion_model.x_embedder.proj.weight"] = torch.zeros(1)
    model = t5.build_t5(weights, "t5xxl_fp16.safetensors")
    config = model.config
    assert (config.d_model, config.num_heads, config.d_kv, config.d_ff, config.num_layers) == (512, 4, 32, 128, 2)
    assert (config.vocab_size, config.feed_forward_proj, config.is_gated_act) == (64, "gated-gelu", True)
    assert model.encoder.embed_tokens.weight is model.shared.weight
    torch.testing.assert_close(_hidden(model, IDS), _hidden(original, IDS), atol=1e-5, rtol=1e-5)


def test_original_t5_with_relu_and_a_decoder_gives_its_encoder():
    from transformers import T5Config, T5Model

    config = T5Config(vocab_size=48, d_model=64, num_heads=2, d_kv=16, d_ff=96, num_layers=2, feed_forward_proj="relu")
    full = sd3_fixtures._perturbed(T5Model(config), torch.Generator().manual_seed(5)).eval()
    model = t5.build_t5(full.state_dict(), "t5_base.safetensors")
    assert (model.config.feed_forward_proj, model.config.d_ff, model.config.d_kv) == ("relu", 96, 16)
    with torch.no_grad():
        expected = full.encoder(input_ids=torch.tensor([IDS])).last_hidden_state
    torch.testing.assert_close(_hidden(model, IDS), expected, atol=1e-5, rtol=1e-5)


def test_files_that_are_not_a_usable_t5_are_refused(original):
    with pytest.raises(ModelFileError, match=r"not a T5 text encoder: no encoder\.block\.0.*found 1 tensors \(x"):
        t5.build_t5({"x": torch.zeros(1)}, "clip_l.safetensors")
    weights = sd3_fixtures.t5_file_weights(original)
    scaled = {**weights, "scaled_fp8": torch.zeros(0), "encoder.block.0.layer.0.SelfAttention.q.scale_weight":
              torch.ones(())}
    with pytest.raises(ModelFileError, match=r"scaled fp8 T5 .*must be dequantized before"):
        t5.build_t5(scaled, "t5xxl_fp8_e4m3fn_scaled.safetensors")
    cut = {k: v for k, v in weights.items() if k != "encoder.block.1.layer.1.DenseReluDense.wo.weight"}
    with pytest.raises(ModelFileError, match=r"missing 1 \(encoder\.block\.1\.layer\.1\.DenseReluDense\.wo\.weight"):
        t5.build_t5(cut, "cut.safetensors")


def test_tokenizer_comes_from_a_local_file_or_folder(tmp_path, monkeypatch):
    path = sd3_fixtures.write_tokenizer(tmp_path / "tok")
    import huggingface_hub

    def no_network(*_args, **_kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    for location in (path, path.parent):
        tokenizer = t5_tokenizer(location)
        assert tokenizer("a photo of a cat", add_special_tokens=False)["input_ids"] == [4, 5, 6, 4, 7]
        assert tokenizer("cat")["input_ids"] == [7, 1]
        assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    with pytest.raises(ModelFileError, match=f"no T5 tokenizer .*install the catalog entry {CATALOG_ENTRY}"):
        t5_tokenizer(tmp_path / "nothing_here")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelFileError, match=r"not a T5 tokenizer\.json"):
        t5_tokenizer(tmp_path / "broken")


def test_tokens_are_per_word_closed_by_the_end_token_and_padded_to_the_family_length(tokenizer):
    tokens = t5.tokenize_t5(tokenizer, "a photo\nof  (red:1.5) cat")
    assert tokens[:7] == [(4, 1.0), (5, 1.0), (6, 1.0), (8, 1.5), (7, 1.0), (1, 1.0), (0, 1.0)]
    assert len(tokens) == 77 and set(tokens[6:]) == {(0, 1.0)}
    assert len(t5.tokenize_t5(tokenizer, "a cat", min_length=t5.MIN_LENGTH["flux"])) == 256
    long = t5.tokenize_t5(tokenizer, " ".join(["cat"] * 100))
    assert len(long) == 101 and long[-1] == (1, 1.0)
    assert t5.tokenize_t5(tokenizer, "", min_length=0) == [(1, 1.0)]


def test_encoding_is_the_last_hidden_state_of_the_padded_tokens(original, tokenizer):
    got = t5.encode_t5(original, tokenizer, "a photo of a cat")
    assert got.shape == (1, 77, 512)
    torch.testing.assert_close(got, _hidden(original, [4, 5, 6, 4, 7, 1] + [0] * 71))


def test_weights_interpolate_from_the_empty_prompt_as_comfyui(original, tokenizer):
    got = t5.encode_t5(original, tokenizer, "a (red cat:1.5) on (the:0.5) table", min_length=12)
    ids = [4, 8, 7, 10, 11, 12, 1, 0, 0, 0, 0, 0]
    weights = torch.tensor([1, 1.5, 1.5, 1, 0.5, 1, 1, 1, 1, 1, 1, 1])[None, :, None]
    plain, empty = _hidden(original, ids), _hidden(original, [1] + [0] * 11)
    torch.testing.assert_close(got, empty + (plain - empty) * weights)
    assert not torch.allclose(got, plain)
    torch.testing.assert_close(t5.encode_t5(original, tokenizer, "a red cat on the table", min_length=12), plain)


def test_real_t5_xxl_config_comes_back_from_its_shapes():
    from transformers import T5Config, T5EncoderModel

    xxl = {"vocab_size": 32128, "d_model": 4096, "num_heads": 64, "d_kv": 64, "d_ff": 10240, "num_layers": 24}
    with torch.device("meta"):
        model = T5EncoderModel(T5Config(feed_forward_proj="gated-gelu", **xxl))
    config = t5.t5_config({k: v for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"})
    assert {key: getattr(config, key) for key in xxl} == xxl
    assert (config.feed_forward_proj, config.dense_act_fn, config.relative_attention_num_buckets) == \
        ("gated-gelu", "gelu_new", 32)


def test_stored_half_precision_is_kept(original, tmp_path):
    from visionatrix.nodes.state_dicts import read_state_dict

    weights = {k: v.half() for k, v in sd3_fixtures.t5_file_weights(original).items()}
    path = sd3_fixtures.write(weights, tmp_path / "t5xxl_fp16.safetensors")
    model = t5.build_t5(read_state_dict(path), path)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    torch.testing.assert_close(model.shared.weight, weights["shared.weight"])


def test_plain_fp8_files_load_in_fp8_and_compute_once_cast(original):
    weights = {k: v.to(torch.float8_e4m3fn) for k, v in sd3_fixtures.t5_file_weights(original).items()}
    model = t5.build_t5(weights, "t5xxl_fp8_e4m3fn.safetensors")
    assert {p.dtype for p in model.parameters()} == {torch.float8_e4m3fn}
    model = model.to(torch.float32)
    reference = copy.deepcopy(original)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(parameter.to(torch.float8_e4m3fn).float())
    torch.testing.assert_close(_hidden(model, IDS), _hidden(reference, IDS), atol=1e-5, rtol=1e-5)


def test_a_sentencepiece_model_without_its_packages_is_refused_naming_the_catalog_entry(tmp_path):
    pytest.importorskip("tokenizers")
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sentencepiece is installed: the file would be read")
    (tmp_path / "spiece.model").write_bytes(b"\x00not a model")
    with pytest.raises(ModelFileError, match=f"install the catalog's {CATALOG_ENTRY}"):
        t5_tokenizer(tmp_path)
