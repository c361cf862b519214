"""fp8 weights: ComfyUI's scaled and plain fp8 files dequantize to the weights they hold; modules stored in fp8
compute what the same module computes with its weights rounded through fp8; bad scales and names are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from tests import flux_fixtures, sd3_fixtures
from visionatrix.diffusion.checkpoints import fp8
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max
PREFIX = "model.diffusion_model."
T5_IDS = torch.tensor([[5, 17, 3, 42, 1, 0, 0]])


def flux() -> torch.nn.Module:
    return copy.deepcopy(flux_fixtures.flux_model("schnell"))


@torch.inference_mode()
def run_flux(model: torch.nn.Module) -> torch.Tensor:
    return model(**flux_fixtures.flux_inputs(flux_fixtures.flux_config("schnell"))).sample


@torch.inference_mode()
def run_t5(model: torch.nn.Module) -> torch.Tensor:
    return model(input_ids=T5_IDS).last_hidden_state


def linear_weight_keys(model: torch.nn.Module, *, skip: tuple[str, ...] = ()) -> list[str]:
    return [f"{name}.weight".lstrip(".") for name, sub in model.named_modules()
            if isinstance(sub, torch.nn.Linear | torch.nn.Conv2d) and name.rsplit(".", 1)[-1] not in skip]


def scaled_fp8_file(model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """``model``'s weights as a ComfyUI scaled-fp8 file holds them: each linear weight fp8 with its scale."""
    out = {prefix + key: value.clone() for key, value in model.state_dict().items()}
    for key in linear_weight_keys(model):
        weight = out[prefix + key]
        scale = (weight.abs().max() / E4M3_MAX).to(torch.float32)
        base = prefix + key[: -len(".weight")]
        out[prefix + key] = (weight / scale).to(E4M3)
        out[base + ".scale_weight"] = scale.reshape(())
        out[base + ".scale_input"] = torch.ones((), dtype=torch.float32)
    out[prefix + "scaled_fp8"] = torch.empty(0, dtype=E4M3)
    return out


def round_tripped(model: torch.nn.Module, storage: torch.dtype, *, skip: tuple[str, ...] = ()) -> torch.nn.Module:
    """A copy of ``model`` whose linear weights went to ``storage`` and back (the reference for fp8 storage)."""
    reference = copy.deepcopy(model)
    params = dict(reference.named_parameters())
    with torch.no_grad():
        for key in linear_weight_keys(reference, skip=skip):
            params[key].copy_(params[key].to(storage).to(params[key].dtype))
    return reference


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def test_weight_dtype_names_are_comfyuis_and_unknown_ones_are_refused():
    names = fp8.WEIGHT_DTYPES
    assert names == {"default": None, "fp8_e4m3fn": E4M3, "fp8_e4m3fn_fast": E4M3, "fp8_e5m2": torch.float8_e5m2}
    assert fp8.weight_dtype_of("fp8_e4m3fn_fast") is E4M3 and fp8.weight_dtype_of("default") is None
    with pytest.raises(InvalidInput, match="unknown weight dtype 'fp16'") as caught:
        fp8.weight_dtype_of("fp16")
    assert caught.value.input_name == "weight_dtype"


def test_the_scaled_fp8_marker_is_found_alone_or_under_a_prefix():
    assert fp8.is_scaled_fp8(["a.weight", "scaled_fp8"])
    assert fp8.is_scaled_fp8(["model.diffusion_model.scaled_fp8", "model.diffusion_model.x.weight"])
    assert not fp8.is_scaled_fp8(["a.weight", "a.scaled_fp8_extra", "not_scaled_fp8"])


def test_a_scaled_fp8_flux_file_dequantizes_to_the_weights_it_holds(tmp_path):
    model = flux()
    path = tmp_path / "flux_fp8_scaled.safetensors"
    save_file(scaled_fp8_file(model, PREFIX), path)
    state_dict = read_state_dict(path)
    assert fp8.is_scaled_fp8(state_dict) and fp8.fp8_dtype_of(state_dict) is E4M3

    weights = fp8.dequantize_scaled_fp8(state_dict, dtype=torch.float32, path=path)

    assert set(weights) == {PREFIX + key for key in model.state_dict()}
    key = PREFIX + "transformer_blocks.0.attn.to_q.weight"
    scale = state_dict[PREFIX + "transformer_blocks.0.attn.to_q.scale_weight"]
    assert torch.equal(weights[key], state_dict[key].float() * scale) and weights[key].dtype == torch.float32
    norm = PREFIX + "transformer_blocks.0.attn.norm_q.weight"
    assert weights[norm] is state_dict[norm]  # a tensor that was not fp8 is kept as it is
    loaded = flux()
    loaded.load_state_dict({k[len(PREFIX):]: v for k, v in weights.items()})
    expected, got = run_flux(model), run_flux(loaded)
    assert 0 < relative_error(got, expected) < 0.1  # within fp8's rounding (3 mantissa bits) of the original


def test_a_plain_fp8_t5_file_is_cast_to_the_requested_dtype():
    model = sd3_fixtures.build_t5()
    state_dict = {key: value.to(E4M3) if key.endswith("SelfAttention.q.weight") else value
                  for key, value in model.state_dict().items()}
    assert not fp8.is_scaled_fp8(state_dict) and fp8.fp8_dtype_of(state_dict) is E4M3

    weights = fp8.dequantize_scaled_fp8(state_dict, dtype=torch.bfloat16, path="t5xxl_fp8_e4m3fn.safetensors")

    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert weights[key].dtype == torch.bfloat16 and torch.equal(weights[key].float(), state_dict[key].float())
    assert weights["shared.weight"].dtype == torch.float32
    assert fp8.fp8_dtype_of(model.state_dict()) is None


def test_one_scale_per_output_channel_is_accepted():
    weight = torch.randn(8, 4).to(E4M3)
    scale = torch.rand(8, 1) + 0.5
    weights = fp8.dequantize_scaled_fp8({"l.weight": weight, "l.scale_weight": scale}, dtype=torch.float32,
                                        path="f")
    assert torch.equal(weights["l.weight"], weight.float() * scale)


@pytest.mark.parametrize(("tensors", "message"), [
    ({"a.weight": torch.zeros(2, 2, dtype=E4M3), "b.scale_weight": torch.ones(())},
     r"f\.safetensors: b\.scale_weight: a weight scale without its weight b\.weight"),
    ({"a.weight": torch.zeros(8, 4, dtype=E4M3), "a.scale_weight": torch.ones(3)},
     r"a\.scale_weight: a weight scale of shape \[3\] does not fit its weight of shape \[8, 4\]"),
])
def test_a_scale_without_its_weight_or_of_the_wrong_shape_is_refused(tensors, message):
    with pytest.raises(ModelFileError, match=message):
        fp8.dequantize_scaled_fp8(tensors, dtype=torch.float32, path="f.safetensors")


def test_a_t5_stored_in_fp8_computes_as_its_fp8_rounded_weights_and_keeps_wo_in_the_compute_dtype():
    model = sd3_fixtures.build_t5()
    reference = round_tripped(model, E4M3, skip=("wo",))
    stored = fp8.store_in_fp8(copy.deepcopy(model), storage_dtype=E4M3, compute_dtype=torch.float32)

    params = dict(stored.named_parameters())
    assert params["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].dtype == E4M3
    assert params["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == E4M3
    assert params["encoder.block.0.layer.1.DenseReluDense.wo.weight"].dtype == torch.float32
    assert params["shared.weight"].dtype == torch.float32
    expected = run_t5(reference)
    torch.testing.assert_close(run_t5(stored), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(run_t5(model), expected, rtol=1e-3, atol=1e-3)  # fp8 rounding shows
    assert params["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == E4M3  # put back after the forward
    assert fp8.compute_dtype_of(stored) == torch.float32 and fp8.is_stored_in_fp8(stored)


def test_a_flux_transformer_stored_in_fp8_computes_as_its_fp8_rounded_weights_and_storing_again_changes_nothing():
    model = flux()
    reference = round_tripped(model, torch.float8_e5m2)
    stored = fp8.store_in_fp8(copy.deepcopy(model), storage_dtype=torch.float8_e5m2, compute_dtype=torch.float32)
    first = {key: value.clone() for key, value in stored.state_dict().items()}

    fp8.store_in_fp8(stored, storage_dtype=torch.float8_e5m2, compute_dtype=torch.float32)

    linear = stored.transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.float8_e5m2 and linear.bias.dtype == torch.float32
    assert len(linear._forward_pre_hooks) == 1 and len(linear._forward_hooks) == 1
    assert all(torch.equal(first[key].float(), value.float()) for key, value in stored.state_dict().items())
    assert {p.dtype for p in stored.parameters()} == {torch.float8_e5m2, torch.float32}
    torch.testing.assert_close(run_flux(stored), run_flux(reference), rtol=1e-5, atol=1e-5)
    assert fp8.compute_dtype_of(stored) == torch.float32 and fp8.compute_dtype_of(model) == torch.float32


def test_the_fp8_weight_comes_back_after_a_failed_forward():
    layer = fp8.store_in_fp8(torch.nn.Linear(4, 3), storage_dtype=E4M3, compute_dtype=torch.float32)
    with pytest.raises(RuntimeError):
        layer(torch.ones(2, 5))
    assert layer.weight.dtype == E4M3 and isinstance(layer.weight, torch.nn.Parameter)


def test_bf16_compute_gives_bf16_outputs():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    reference = round_tripped(layer, E4M3).to(torch.bfloat16)
    stored = fp8.store_in_fp8(copy.deepcopy(layer), storage_dtype=E4M3, compute_dtype=torch.bfloat16)
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    assert stored(x).dtype == torch.bfloat16 and torch.equal(stored(x), reference(x))


def test_scaled_storage_keeps_a_scaled_files_own_fp8_values_and_is_closer_than_plain_storage():
    model = flux()
    file = scaled_fp8_file(model)
    weights = fp8.dequantize_scaled_fp8(file, dtype=torch.float32, path="f")
    loaded = flux()
    loaded.load_state_dict(weights)

    scaled = fp8.store_in_fp8(copy.deepcopy(loaded), storage_dtype=E4M3, compute_dtype=torch.float32, scaled=True)

    to_q = scaled.transformer_blocks[0].attn.to_q
    assert torch.equal(to_q.weight.float(), file["transformer_blocks.0.attn.to_q.weight"].float())
    torch.testing.assert_close(fp8.weight_scale_of(to_q), file["transformer_blocks.0.attn.to_q.scale_weight"])
    torch.testing.assert_close(run_flux(scaled), run_flux(loaded), rtol=1e-5, atol=1e-5)
    plain = fp8.store_in_fp8(copy.deepcopy(model), storage_dtype=E4M3, compute_dtype=torch.float32)
    rescaled = fp8.store_in_fp8(copy.deepcopy(model), storage_dtype=E4M3, compute_dtype=torch.float32, scaled=True)
    expected = run_flux(model)
    assert (run_flux(rescaled) - expected).abs().mean() < (run_flux(plain) - expected).abs().mean()
    assert fp8.weight_scale_of(plain.transformer_blocks[0].attn.to_q) is None


def test_storage_needs_an_fp8_dtype():
    with pytest.raises(InvalidInput, match="not an fp8 dtype"):
        fp8.store_in_fp8(torch.nn.Linear(2, 2), storage_dtype=torch.float16, compute_dtype=torch.float32)
