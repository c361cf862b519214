"""A sampling run as ComfyUI's samplers do it: LATENT in, LATENT out, on the executor's device.

The latent is scaled into the model's space (``latent_format.process_in``), noised to the first sigma, walked by
the sampler with the guider's estimate per step, and scaled back. Around the run: the model manager keeps the UNet
on the device, LoRA patches are applied (and undone after, also on failure), FreeU hooks are installed. A latent
``noise_mask`` keeps the unmasked cells at the original latent (noised to the current sigma before each step and
restored after it, as ComfyUI's inpainting sampler), and Differential Diffusion thresholds that mask by the step.
Each step reports progress with a latent preview (a cheap RGB projection) and is the interrupt point. CUDA running
out of memory is a clear error after the cache is emptied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visionatrix.diffusion import conds as cond_prep
from visionatrix.diffusion.guiders import Guider
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.patches import applied
from visionatrix.diffusion.sampling import ksampler
from visionatrix.diffusion.unet_call import UnetEvaluator
from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes import context


def fit_empty_latent(latent: Any, model: DiffusionModel) -> Any:
    """An all-zero latent of another channel count (EmptyLatentImage's 4 channels given to a 16-channel Flux or SD3
    model) becomes zeros of the model's channel count, as ComfyUI does; anything else is returned as it is."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), Tensor):
        return latent
    samples = latent["samples"]
    channels = model.latent_format.channels
    if samples.ndim == 4 and samples.shape[1] != channels and not bool(samples.any()):
        return {**latent, "samples": samples.new_zeros(samples.shape[0], channels, *samples.shape[2:])}
    return latent


def check_latent(latent: Any, model: DiffusionModel, name: str = "latent_image") -> Tensor:
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), Tensor):
        raise InvalidInput(name, f"expected a LATENT (a dict with 'samples'), got {type(latent).__name__}")
    samples = latent["samples"]
    if samples.ndim != 4 or samples.shape[0] == 0:
        raise InvalidInput(name, f"expected latent samples shaped [B, C, H, W], got {tuple(samples.shape)}")
    if samples.shape[1] != model.latent_format.channels:
        raise InvalidInput(name, f"the latent has {samples.shape[1]} channels; this {model.family} model samples "
                                 f"{model.latent_format.channels}-channel latents")
    return samples


def sample(guider: Guider, *, sampler_name: str, sigmas: Tensor, latent: dict[str, Any], noise: Tensor,
           seed: int, sampler_options: dict[str, Any] | None = None) -> tuple[Tensor, Tensor]:
    """The sampled latent (raw VAE space) and the last denoised estimate, both float32 on the executor's device."""
    ctx = context.current()
    model = guider.model
    samples = check_latent(latent, model)
    device = _device(ctx.device)
    latent_image = model.latent_format.process_in(samples.float().to(device))
    if noise.shape != samples.shape:
        raise InvalidInput("noise", f"noise shaped {tuple(noise.shape)} does not match the latent "
                                    f"{tuple(samples.shape)}")
    noise = noise.float().to(device)
    sigmas = sigmas.float().to(device)
    mask = _denoise_mask(latent.get("noise_mask"), latent_image)
    sets = {name: cond_prep.prepare(guider.conds[name], model, latent_image, name=name, denoise_mask=mask,
                                    device=device) for name in guider.needed()}
    _control_to_uncond(guider, sets)
    last: dict[str, Tensor] = {}
    with _running(ctx, model) as evaluator:
        denoise = _denoiser(guider, evaluator, sets, mask, latent_image, noise, sigmas)
        callback = _progress(ctx, model, last)
        try:
            out = ksampler.sample(denoise, model.model_sampling, sampler_name, sigmas, latent_image, noise,
                                  seed=seed, callback=callback, **(sampler_options or {}))
        except torch.OutOfMemoryError as exc:
            _free_cuda()
            height, width = samples.shape[-2] * 8, samples.shape[-1] * 8
            raise ModelError(f"out of GPU memory while sampling {samples.shape[0]} image(s) of {width}x{height} with "
                             f"{model.name or model.family}; the memory was freed: try a smaller size or batch") \
                from exc
    denoised = last.get("denoised", out)
    return model.latent_format.process_out(out), model.latent_format.process_out(denoised)


def _control_to_uncond(guider: Guider, sets: dict[str, list[cond_prep.PreparedCond]]) -> None:
    """``ControlNetApply`` (``control_apply_to_uncond``): negative entries without a ControlNet get the positive's,
    as ComfyUI does for the older node (``ControlNetApplyAdvanced`` sets both conditionings itself)."""
    if "negative" not in sets or "positive" not in sets:
        return
    sources = [entry[1] for entry in guider.conds["positive"] if isinstance(entry, list | tuple) and len(entry) == 2]
    control = next((options.get("control") for options in sources
                    if options.get("control") is not None and options.get("control_apply_to_uncond")), None)
    if control is None:
        return
    for prepared in sets["negative"]:
        if prepared.control is None:
            prepared.control = control


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


@contextlib.contextmanager
def _running(ctx: Any, model: DiffusionModel) -> Iterator[UnetEvaluator]:
    holder = ctx.models.use(model.unet) if ctx.models is not None else contextlib.nullcontext(model.unet)
    with contextlib.ExitStack() as stack:
        stack.enter_context(holder)
        stack.enter_context(applied(model.unet, model.patches))
        freeu = model.options.get("freeu_v2")
        if freeu is not None:
            from visionatrix.diffusion.freeu import freeu_v2

            stack.enter_context(freeu_v2(model.unet, *freeu))
        stack.enter_context(torch.inference_mode())
        yield UnetEvaluator(model)


def _denoise_mask(mask: Any, latent: Tensor) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise InvalidInput("latent_image", f"noise_mask must be a tensor, got {type(mask).__name__}")
    m = mask.float().to(latent.device)
    m = m.reshape(-1, 1, *m.shape[-2:])
    if m.shape[-2:] != latent.shape[-2:]:
        m = F.interpolate(m, size=latent.shape[-2:], mode="bilinear", align_corners=False)
    if m.shape[0] != latent.shape[0]:
        reps = -(-latent.shape[0] // m.shape[0])
        m = m.repeat(reps, 1, 1, 1)[: latent.shape[0]]
    return m.expand(-1, latent.shape[1], -1, -1)


def _denoiser(guider: Guider, evaluator: UnetEvaluator, sets: dict[str, list[cond_prep.PreparedCond]],
              mask: Tensor | None, latent_image: Tensor, noise: Tensor, sigmas: Tensor) -> Callable[..., Tensor]:
    names = list(sets)
    ms = guider.model.model_sampling
    differential = guider.model.options.get("differential_diffusion")
    skip_guidance = guider.model.options.get("skip_layer_guidance")

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        step_mask = mask
        if mask is not None:
            if differential is not None:
                step_mask = _differential(mask, sigma, sigmas, ms, float(differential))
            x = x * step_mask + ms.noise_scaling(sigma, noise, latent_image) * (1 - step_mask)
        outs = evaluator.evaluate(x, sigma, [sets[name] for name in names])
        denoised = guider.combine(dict(zip(names, outs, strict=True)))
        if skip_guidance is not None and "positive" in sets:
            denoised = _skip_layer_guidance(evaluator, x, sigma, sets["positive"], outs[names.index("positive")],
                                            denoised, skip_guidance)
        if step_mask is not None:
            denoised = denoised * step_mask + latent_image * (1 - step_mask)
        return denoised

    return denoise


def _skip_layer_guidance(evaluator: UnetEvaluator, x: Tensor, sigma: Tensor, positive: list[cond_prep.PreparedCond],
                         positive_out: Tensor, denoised: Tensor, settings: tuple[Any, ...]) -> Tensor:
    """SD3.5's Skip Layer Guidance: within its sigma range, ``denoised + (positive - positive without the given
    blocks) x scale`` (one more network call per step there)."""
    layers, scale, start_sigma, end_sigma = settings
    if not end_sigma <= float(torch.as_tensor(sigma).reshape(-1)[0]) <= start_sigma:
        return denoised
    evaluator.skip_layers = layers
    try:
        (skipped,) = evaluator.evaluate(x, sigma, [positive])
    finally:
        evaluator.skip_layers = None
    return denoised + (positive_out - skipped) * scale


def _differential(mask: Tensor, sigma: Tensor, sigmas: Tensor, ms: Any, strength: float) -> Tensor:
    """Differential Diffusion: a cell is denoised once the run has progressed past its mask value."""
    sigma_to = max(float(sigmas[-1]), float(ms.sigma_min))
    ts_from = float(ms.timestep(sigmas[0].reshape(1)))
    ts_to = float(ms.timestep(torch.tensor([sigma_to], device=sigmas.device)))
    current = float(ms.timestep(torch.as_tensor(sigma, device=sigmas.device).reshape(-1)[:1]))
    threshold = (current - ts_to) / (ts_from - ts_to) if ts_from != ts_to else 0.0
    binary = (mask >= threshold).to(mask.dtype)
    return binary if strength >= 1.0 else mask * (1 - strength) + binary * strength


def _progress(ctx: Any, model: DiffusionModel, last: dict[str, Tensor]) -> Callable[[int, int, Tensor, Tensor], None]:
    def callback(step: int, total: int, _x: Tensor, denoised: Tensor) -> None:
        last["denoised"] = denoised
        ctx.progress(step + 1, total, model.latent_format.preview(denoised))

    return callback


def _free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
