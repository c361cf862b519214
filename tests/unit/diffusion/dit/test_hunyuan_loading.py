"""HunyuanDiT files: detection from shapes, the transformer and text encoders built from a tiny all-in-one file in
ComfyUI's layout equal the modules it was made from, sampling constants."""

from __future__ import annotations

import pytest
import torch

from tests import hunyuan_fixtures
from visionatrix.diffusion.dit import hunyuan_dit, hunyuan_dit_text
from visionatrix.errors import ModelFileError


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


@pytest.mark.parametrize(("version", "style"), [("v1.2", False), ("v1.1", True)])
def test_detect_reads_version_sizes_and_components_from_shapes(version: str, style: bool) -> None:
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(hunyuan_fixtures.cached_checkpoint(version).state_dict))

    assert info.version == version
    assert info.use_style_cond_and_image_meta_size is style
    assert (info.prefix, info.hidden, info.heads, info.depth, info.patch_size) == ("model.", 64, 4, 4, 2)
    assert (info.in_channels, info.learn_sigma, info.mlp_hidden) == (4, True, 160)
    assert (info.text_dim, info.text_len, info.t5_dim, info.text_len_t5, info.pooled_dim) == (64, 77, 512, 256, 48)
    assert info.components == {
        "transformer": "model.", "hydit_clip": "text_encoders.hydit_clip.transformer.",
        "mt5xl": "text_encoders.mt5xl.transformer.", "mt5xl_spiece": "text_encoders.mt5xl.", "vae": "vae."}


def test_real_sizes_give_the_real_config() -> None:
    """The real v1.2 DiT-g/2: 1408 wide, 40 blocks, 16 heads of 88, MLP 6144 (ComfyUI's ratio 4.3637)."""
    shapes = _real_shapes(hidden=1408, depth=40, head_width=88, mlp=6144, extra_in=1024)
    info = hunyuan_dit.detect_hunyuan_dit(shapes)
    config = hunyuan_dit.hunyuan_diffusers_config(info)

    assert (info.version, info.heads, info.head_width) == ("v1.2", 16, 88)
    assert int(config["hidden_size"] * config["mlp_ratio"]) == 6144
    assert (config["text_len"], config["text_len_t5"], config["cross_attention_dim_t5"]) == (77, 256, 2048)
    assert hunyuan_dit.detect_hunyuan_dit(_real_shapes(extra_in=1024 + 1536 + 1408, style=True)).version == "v1.1"


def _real_shapes(*, hidden: int = 1408, depth: int = 40, head_width: int = 88, mlp: int = 6144, extra_in: int = 1024,
                 style: bool = False) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "x_embedder.proj.weight": (hidden, 4, 2, 2), "t_embedder.mlp.0.weight": (hidden, 256),
        "extra_embedder.0.weight": (4 * hidden, extra_in), "extra_embedder.2.weight": (hidden, 4 * hidden),
        "mlp_t5.0.weight": (8192, 2048), "mlp_t5.2.weight": (1024, 8192), "text_embedding_padding": (333, 1024),
        "pooler.positional_embedding": (257, 2048), "pooler.c_proj.weight": (1024, 2048),
        "final_layer.linear.weight": (32, hidden)}
    if style:
        shapes["style_embedder.weight"] = (1, hidden)
    for index in range(depth):
        block = f"blocks.{index}."
        shapes |= {block + "attn1.Wqkv.weight": (3 * hidden, hidden), block + "attn1.q_norm.weight": (head_width,),
                   block + "attn2.kv_proj.weight": (2 * hidden, 1024), block + "mlp.fc1.weight": (mlp, hidden)}
        if index > depth // 2:
            shapes[block + "skip_linear.weight"] = (hidden, 2 * hidden)
    return {"model." + key: value for key, value in shapes.items()}


@pytest.mark.parametrize("version", ["v1.2", "v1.1"])
def test_built_transformer_has_the_original_weights(version: str) -> None:
    tiny = hunyuan_fixtures.cached_checkpoint(version)
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(tiny.state_dict))

    model = hunyuan_dit.build_hunyuan_dit(tiny.state_dict, info, "tiny.safetensors")

    expected = tiny.transformer.state_dict()
    built = model.state_dict()
    assert set(built) == set(expected)
    assert all(torch.equal(built[key], expected[key]) for key in expected)
    assert not model.training


def test_transformer_alone_without_prefix_is_detected_and_built() -> None:
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    alone = {key.removeprefix("model."): value for key, value in tiny.state_dict.items() if key.startswith("model.")}
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(alone))

    model = hunyuan_dit.build_hunyuan_dit(alone, info)

    assert info.prefix == "" and info.components == {"transformer": ""}
    assert torch.equal(model.state_dict()["blocks.3.skip_linear.weight"],
                       tiny.transformer.state_dict()["blocks.3.skip_linear.weight"])


def test_not_a_hunyuan_file_names_what_it_holds() -> None:
    with pytest.raises(ModelFileError, match=r"not a HunyuanDiT transformer.*3 tensors under double_blocks"):
        hunyuan_dit.detect_hunyuan_dit({"double_blocks.0.img_attn.qkv.weight": (9, 3), "double_blocks.0.x": (1,),
                                        "double_blocks.1.x": (1,)}, "flux.safetensors")


def test_unknown_extra_embedder_width_is_refused() -> None:
    with pytest.raises(ModelFileError, match="extra embedder takes 1000 features"):
        hunyuan_dit.detect_hunyuan_dit(_real_shapes(extra_in=1000))


def test_missing_block_is_named() -> None:
    shapes = {key: value for key, value in _real_shapes().items() if not key.startswith("model.blocks.7.")}
    with pytest.raises(ModelFileError, match=r"blocks \[7\] are missing"):
        hunyuan_dit.detect_hunyuan_dit(shapes)


def test_unknown_weight_in_the_transformer_is_refused() -> None:
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    state = dict(tiny.state_dict)
    state["model.blocks.0.attn1.extra.weight"] = torch.zeros(2)
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(state))
    with pytest.raises(ModelFileError, match=r"unexpected 1 \(blocks.0.attn1.extra.weight\)"):
        hunyuan_dit.build_hunyuan_dit(state, info, "bad.safetensors")


def test_text_encoders_equal_the_original_modules() -> None:
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(tiny.state_dict))

    encoders = hunyuan_dit_text.build_hunyuan_text_encoders(tiny.state_dict, info, "tiny.safetensors")

    assert type(encoders["hydit_clip"]).__name__ == "BertModel"
    assert type(encoders["mt5xl"]).__name__ == "MT5EncoderModel"
    ids = torch.tensor([[2, 5, 6, 7, 8, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        bert = encoders["hydit_clip"](input_ids=ids, attention_mask=mask).last_hidden_state
        bert_ref = tiny.components["hydit_clip"](input_ids=ids, attention_mask=mask).last_hidden_state
        mt5 = encoders["mt5xl"](input_ids=ids, attention_mask=mask).last_hidden_state
        mt5_ref = tiny.components["mt5xl"](input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(bert, bert_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(mt5, mt5_ref, rtol=0, atol=1e-6)


def test_missing_text_encoder_is_named() -> None:
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    state = {key: value for key, value in tiny.state_dict.items() if not key.startswith("text_encoders.mt5xl.")}
    info = hunyuan_dit.detect_hunyuan_dit(_shapes(state))
    with pytest.raises(ModelFileError, match="no HunyuanDiT text encoder mt5xl"):
        hunyuan_dit_text.build_hunyuan_text_encoders(state, info, "no_t5.safetensors")


@pytest.mark.parametrize(("version", "beta_end"), [("v1.2", 0.018), ("v1.1", 0.03)])
def test_model_sampling_is_v_prediction_on_comfyuis_betas(version: str, beta_end: float) -> None:
    from visionatrix.diffusion.sampling.model_sampling import Prediction

    info = hunyuan_dit.detect_hunyuan_dit(_shapes(hunyuan_fixtures.cached_checkpoint(version).state_dict))
    sampling = hunyuan_dit.model_sampling(info)

    betas = torch.linspace(0.00085**0.5, beta_end**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, dim=0)
    assert sampling.prediction is Prediction.V
    torch.testing.assert_close(sampling.sigmas, (((1 - alphas) / alphas) ** 0.5).float())
