"""The sampling run around the network: per-step progress with latent previews, interrupts within a step, out of
memory as a clear error, patches undone after a run, inpainting channels, areas, masks and timestep ranges, and the
loaders' families, predictions and refusals."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple, CLIPLoader, CLIPSetLastLayer
from comfy_nodes.diffusion.sampling_nodes import KSampler
from comfy_nodes.diffusion.text_nodes import CLIPTextEncode, CLIPTextEncodeSDXL
from tests import diffusion_fixtures
from visionatrix.diffusion import conds, unet_call
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.guiders import cfg_guider
from visionatrix.diffusion.sampling.model_sampling import Prediction
from visionatrix.diffusion.text.chunks import tokenize_prompt
from visionatrix.errors import Interrupted, InvalidInput, ModelError, ModelFileError

LATENT = {"samples": torch.zeros(1, 4, 8, 8)}


def load(kind: str):
    return CheckpointLoaderSimple().load_checkpoint(f"{kind}.safetensors")


def prompts(clip, positive="a red fox", negative="blurry"):
    return CLIPTextEncode().encode(clip, positive)[0], CLIPTextEncode().encode(clip, negative)[0]


def test_each_step_reports_progress_with_a_latent_preview(node_ctx):
    model, clip, _ = load("sd15")
    seen = []
    node_ctx.on_progress = lambda value, total, preview: seen.append((value, total, preview))
    KSampler().sample(model, 3, 4, 5.0, "euler", "normal", *prompts(clip), LATENT)
    assert [(v, t) for v, t, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    kind, image, side = seen[-1][2]
    assert kind == "JPEG" and image.size == (8, 8) and side == 512


def test_an_interrupt_stops_sampling_after_the_current_step(node_ctx):
    model, clip, _ = load("sd15")
    steps = []

    def progress(value, total, preview):
        steps.append(value)
        if value == 2:
            node_ctx.interrupt_event.set()

    node_ctx.on_progress = progress
    with pytest.raises(Interrupted):
        KSampler().sample(model, 3, 10, 5.0, "euler", "normal", *prompts(clip), LATENT)
    assert steps == [1, 2]
    node_ctx.interrupt_event.clear()


def test_out_of_memory_is_a_clear_error(node_ctx, monkeypatch):
    model, clip, _ = load("sd15")

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(unet_call.UnetEvaluator, "call", oom)
    with pytest.raises(ModelError, match=r"out of GPU memory while sampling 1 image\(s\) of 64x64"):
        KSampler().sample(model, 3, 2, 5.0, "euler", "normal", *prompts(clip), LATENT)


def test_weight_patches_apply_during_the_run_and_are_undone_after(node_ctx):
    model, clip, _ = load("sd15")
    key = "conv_in.weight"
    before = model.unet.get_parameter(key).detach().clone()

    class Shift:
        def __init__(self) -> None:
            self.key = key

        def delta(self, weight):
            return torch.full(weight.shape, 0.5)

    positive, negative = prompts(clip)
    plain = KSampler().sample(model, 3, 2, 5.0, "euler", "normal", positive, negative, LATENT)[0]["samples"]
    patched = KSampler().sample(model.with_patches([Shift()]), 3, 2, 5.0, "euler", "normal", positive, negative,
                                LATENT)[0]["samples"]
    assert not torch.allclose(plain, patched)
    assert torch.equal(model.unet.get_parameter(key), before)


def test_an_inpainting_model_gets_the_mask_and_masked_image_latent_after_the_input(node_ctx):
    model, clip, _ = load("sd15_inpaint")
    assert model.in_channels == 9
    positive, negative = prompts(clip)
    image_latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    with_concat = [[c, {**o, "concat_latent_image": image_latent, "concat_mask": mask}] for c, o in positive]
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        KSampler().sample(model, 3, 1, 1.0, "euler", "normal", with_concat, negative, LATENT)
    finally:
        handle.remove()
    network_input = seen[0]
    assert network_input.shape[1] == 9
    expected_mask = torch.nn.functional.interpolate(mask[None], size=(8, 8), mode="bilinear").round()
    torch.testing.assert_close(network_input[:, 4:5], expected_mask[0:1])
    torch.testing.assert_close(network_input[:, 5:], model.latent_format.process_in(image_latent))


def test_an_area_conditioning_counts_only_inside_its_area_and_feathers_its_inner_edges(node_ctx):
    model, clip, _ = load("sd15")
    positive, _ = prompts(clip)
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    area_cond = [[positive[0][0], {"area": (8, 8, 8, 0), "strength": 2.0}]]
    evaluator = unet_call.UnetEvaluator(model)
    sigma = torch.tensor(3.0)
    whole = conds.prepare(positive, model, latent, name="positive")
    area = conds.prepare(area_cond, model, latent, name="positive")
    with torch.inference_mode():
        (combined,) = evaluator.evaluate(latent, sigma, [whole + area])
        (alone,) = evaluator.evaluate(latent, sigma, [whole])
        x_in = model.model_sampling.scale_input(latent[..., 8:16, 0:8], sigma)
        out = evaluator.call(x_in, model.model_sampling.timestep(sigma.reshape(1)), area[0].context, None)
        area_denoised = model.model_sampling.denoised(latent[..., 8:16, 0:8], sigma, out)
    torch.testing.assert_close(combined[..., :8, :], alone[..., :8, :])  # outside the area: unchanged
    # the area's top and right edges lie inside the latent: each fades in over 8 cells; strength 2
    fade_in = (torch.arange(8) + 1) / 8
    weight = 2.0 * fade_in[:, None] * fade_in.flip(0)[None, :]
    expected = (alone[..., 8:, :8] + area_denoised * weight) / (1 + weight)
    torch.testing.assert_close(combined[..., 8:, :8], expected, rtol=1e-4, atol=1e-4)


def test_a_timestep_range_switches_a_conditioning_on_and_off_by_sigma(node_ctx):
    model, clip, _ = load("sd15")
    positive, _ = prompts(clip)
    late = [[positive[0][0], {"start_percent": 0.5, "end_percent": 1.0}]]
    (prepared,) = conds.prepare(late, model, torch.zeros(1, 4, 8, 8), name="positive")
    middle = model.model_sampling.percent_to_sigma(0.5)
    assert prepared.active(middle * 0.9) and not prepared.active(middle * 1.1)


def test_cfg_one_skips_the_negative_conditioning():
    assert cfg_guider(None, [], [], 1.0).needed() == ["positive"]
    assert cfg_guider(None, [], [], 7.0).needed() == ["positive", "negative"]


def test_families_predictions_and_latent_formats_come_from_the_files(node_ctx, diffusion_models_dir):
    sd15, sdxl, playground = load("sd15")[0], load("sdxl")[0], load("playground25")[0]
    assert (sd15.family, sd15.model_sampling.prediction, sd15.latent_format.scale_factor) == (
        Family.SD1, Prediction.EPS, 0.18215)
    assert (sdxl.family, sdxl.latent_format.scale_factor) == (Family.SDXL, 0.13025)
    assert playground.model_sampling.prediction is Prediction.EDM
    assert playground.latent_format.mean == pytest.approx(diffusion_fixtures.PLAYGROUND_EDM_MEAN)
    raw = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(playground.latent_format.process_out(playground.latent_format.process_in(raw)), raw)
    # SD2's v-prediction does not show in shapes: the file's name tells
    v_file = diffusion_models_dir / "checkpoints" / "sd2-768-v.safetensors"
    if not v_file.exists():
        v_file.symlink_to(diffusion_models_dir / "checkpoints" / "sd2.safetensors")
    assert load("sd2-768-v")[0].model_sampling.prediction is Prediction.V
    assert load("sd2")[0].model_sampling.prediction is Prediction.EPS


def test_a_file_that_is_no_checkpoint_is_refused_naming_what_it_holds(node_ctx, diffusion_models_dir):
    path = diffusion_models_dir / "checkpoints" / "not_a_checkpoint.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2), "decoder.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFileError, match=r"no UNet .* found .*encoder"):
        CheckpointLoaderSimple().load_checkpoint(path.name)
    with pytest.raises(InvalidInput, match="not in the checkpoints folder"):
        CheckpointLoaderSimple().load_checkpoint("missing.safetensors")


def test_conditioning_from_another_family_and_bad_latents_are_named(node_ctx):
    sd15, sd15_clip, _ = load("sd15")
    _sdxl, sdxl_clip, _ = load("sdxl")
    positive, negative = prompts(sdxl_clip)
    with pytest.raises(InvalidInput, match="does not fit this sd1 model"):
        KSampler().sample(sd15, 1, 1, 5.0, "euler", "normal", positive, negative, LATENT)
    positive, negative = prompts(sd15_clip)
    with pytest.raises(InvalidInput, match="16 channels"):  # an empty (all-zero) one would be refitted, not this
        KSampler().sample(sd15, 1, 1, 5.0, "euler", "normal", positive, negative,
                          {"samples": torch.ones(1, 16, 8, 8)})
    (refitted,) = KSampler().sample(sd15, 1, 1, 5.0, "euler", "normal", positive, negative,
                                    {"samples": torch.zeros(1, 16, 8, 8)})
    assert refitted["samples"].shape == (1, 4, 8, 8)


def test_sdxl_text_nodes_carry_pooled_output_and_size_numbers(node_ctx):
    _model, clip, _ = load("sdxl")
    ((cond, options),) = CLIPTextEncodeSDXL().encode(clip, 832, 1216, 0, 0, 832, 1216, "a castle", "stone")[0]
    assert cond.shape == (1, 77, 64 + 320) and options["pooled_output"].shape == (1, 320)
    assert (options["width"], options["height"], options["target_width"]) == (832, 1216, 832)
    layered = CLIPSetLastLayer().set_last_layer(clip, -2)[0]
    assert not torch.allclose(CLIPTextEncode().encode(layered, "a castle")[0][0][0], cond)
    # -1 on SDXL is the last layer without the final norm (the default is the penultimate); beyond the encoders'
    # depth, ComfyUI's fallback: the last layer after the final norm
    tiny = diffusion_fixtures.cached_checkpoint("sdxl").text_encoders
    with torch.no_grad():
        low, high = (tiny[name](input_ids=torch.tensor([[token for token, _ in tokenize_prompt("a castle", name)[0]]]),
                                output_hidden_states=True) for name in ("clip_l", "clip_g"))
    last = CLIPSetLastLayer().set_last_layer(clip, -1)[0]
    torch.testing.assert_close(CLIPTextEncode().encode(last, "a castle")[0][0][0],
                               torch.cat([low.hidden_states[-1], high.hidden_states[-1]], -1), rtol=1e-5, atol=1e-5)
    beyond = CLIPSetLastLayer().set_last_layer(clip, -24)[0]
    torch.testing.assert_close(CLIPTextEncode().encode(beyond, "a castle")[0][0][0],
                               torch.cat([low.last_hidden_state, high.last_hidden_state], -1), rtol=1e-5, atol=1e-5)


def test_a_text_encoder_file_loads_with_clip_loader(node_ctx, diffusion_models_dir):
    folder = diffusion_models_dir / "text_encoders"
    folder.mkdir(exist_ok=True)
    encoder = diffusion_fixtures.cached_checkpoint("sd15").text_encoders["clip_l"]
    save_file({"text_model." + k: v.contiguous() for k, v in encoder.state_dict().items()},
              str(folder / "clip_l.safetensors"))
    (clip,) = CLIPLoader().load_clip("clip_l.safetensors", "stable_diffusion")
    _m, checkpoint_clip, _v = load("sd15")
    torch.testing.assert_close(CLIPTextEncode().encode(clip, "a fox")[0][0][0],
                               CLIPTextEncode().encode(checkpoint_clip, "a fox")[0][0][0])
    with pytest.raises(InvalidInput, match="not supported yet"):
        CLIPLoader().load_clip("clip_l.safetensors", "wan")


def test_textual_inversion_vectors_replace_their_token_embeddings(node_ctx, diffusion_models_dir):
    folder = diffusion_models_dir / "embeddings"
    folder.mkdir(exist_ok=True)
    vectors = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    save_file({"emb_params": vectors}, str(folder / "myconcept.safetensors"))
    _m, clip, _v = load("sd15")
    with_embedding = CLIPTextEncode().encode(clip, "a photo of embedding:myconcept")[0][0][0]
    plain = CLIPTextEncode().encode(clip, "a photo of myconcept")[0][0][0]
    assert not torch.allclose(with_embedding, plain)
    # the reference: the fixture's encoder with the two slots' token embeddings replaced by the vectors
    encoder = diffusion_fixtures.cached_checkpoint("sd15").text_encoders["clip_l"]
    (chunk,) = tokenize_prompt("a photo of embedding:myconcept", "clip_l", embedding_size=lambda name: 2)
    slots = [i for i, (token, _) in enumerate(chunk) if not isinstance(token, int)]
    ids = torch.tensor([[token if isinstance(token, int) else 0 for token, _ in chunk]])
    def put_vectors(_module, _inputs, output):
        output = output.clone()
        output[0, slots] = vectors
        return output

    handle = encoder.embeddings.token_embedding.register_forward_hook(put_vectors)
    try:
        with torch.no_grad():
            hidden = encoder(input_ids=ids).last_hidden_state
    finally:
        handle.remove()
    assert slots == [4, 5]
    torch.testing.assert_close(with_embedding, hidden, rtol=1e-4, atol=1e-4)


def test_a_clip_l_projection_saved_beside_the_text_model_is_ignored(node_ctx, diffusion_models_dir):
    """ComfyUI-saved checkpoints keep CLIP-L's ``text_projection`` (and ``logit_scale``), which the UNet never uses."""
    state = dict(diffusion_fixtures.cached_checkpoint("sdxl").state_dict)
    state["conditioner.embedders.0.transformer.text_projection.weight"] = torch.eye(64)
    state["conditioner.embedders.0.transformer.logit_scale"] = torch.tensor(4.6)
    save_file(state, str(diffusion_models_dir / "checkpoints" / "sdxl_comfy_saved.safetensors"))
    _m, clip, _v = load("sdxl_comfy_saved")
    _m, plain, _v = load("sdxl")
    torch.testing.assert_close(CLIPTextEncode().encode(clip, "a fox")[0][0][0],
                               CLIPTextEncode().encode(plain, "a fox")[0][0][0])
