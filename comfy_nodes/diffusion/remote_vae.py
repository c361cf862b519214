"""RemoteVAEDecode (Visionatrix's node): decodes a latent with the VAE of a model family, named by ``vae_type``.

The node has no VAE input: the flows use it to decode without loading the VAE themselves. Where the settings name
no endpoint for the type (``VIX_REMOTE_VAE_DECODERS``, carried in the node context), it decodes locally with the
family's VAE file from the vae folder (the catalog's file for that family, loaded once through the model manager
like VAELoader's).

Where they name one, the endpoint decodes, spoken to with Hugging Face's hybrid-inference protocol as diffusers
implements it (``diffusers.utils.remote_utils.prepare_decode`` builds the request): a POST of the latent's raw bytes
(``Content-Type: tensor/binary``) with query parameters ``shape``, ``dtype``, ``scaling_factor`` (and
``shift_factor`` for Flux), ``output_type=pt`` and ``partial_postprocess=False``; the answer is the decoded tensor's
raw bytes with ``shape`` and ``dtype`` headers, ``[B, 3, H, W]`` in -1..1 (a video ``[B, 3, F, H, W]``), mapped to
an IMAGE ``[B, H, W, 3]`` (a video's frames in the batch) as the local decode does. ComfyUI's LATENT holds the
VAE's raw latents while the protocol takes a pipeline's scaled ones, so the node sends ``(raw - shift) * scale``,
which the endpoint undoes. Flux latents go unpacked, ``[B, 16, h, w]`` (the protocol's packed ``[B, tokens, 64]``
with ``height``/``width`` is not needed). Latents travel in the dtype the public endpoints run (float16, Flux
bfloat16). A failure (an HTTP error status, no connection, a timeout, an answer that is not a tensor) raises
:class:`ModelError` naming the endpoint; the node never falls back to a local decode on its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from comfy_nodes.diffusion.vae_nodes import FOLDER, VAELoader
from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of

VAE_FILES = {
    "SD v1": ("vae-ft-mse-840000-ema-pruned.safetensors", "vae-ft-mse-840000-ema-pruned.ckpt"),
    "SDXL": ("sdxl_vae.safetensors",),
    "Flux": ("ae.safetensors", "flux_vae.safetensors"),
    "HunyuanVideo": ("hunyuan_video_vae_bf16.safetensors",),
}
"""Each type's VAE files as the catalog installs them, the first found is used."""

REMOTE_LATENTS = {
    "SD v1": (4, 4, 0.18215, None, "float16"),
    "SDXL": (4, 4, 0.13025, None, "float16"),
    "Flux": (4, 16, 0.3611, 0.1159, "bfloat16"),
    "HunyuanVideo": (5, 16, 0.476986, None, "float16"),
}
"""Per type: the latent's dimensions and channels, the protocol's ``scaling_factor`` and ``shift_factor``, and the
dtype the latent is sent in."""

TIMEOUT_S = 300.0
"""Longest wait for the endpoint on one socket operation (connect, send, each read)."""
ERROR_BODY_CHARS = 300


class RemoteVAEDecode:
    DESCRIPTION = ("Decodes latents with the VAE of the chosen model family: by the remote endpoint configured for "
                   "the type (VIX_REMOTE_VAE_DECODERS, Hugging Face's hybrid-inference protocol), else locally with "
                   "its file in the vae folder (e.g. ae.safetensors for Flux).")
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae_type": (list(VAE_FILES), {"default": "Flux"})}}

    def decode(self, samples: Any, vae_type: str) -> tuple[Any]:
        if vae_type not in VAE_FILES:
            raise InvalidInput("vae_type", f"unknown VAE type {vae_type!r}; expected one of {', '.join(VAE_FILES)}")
        ctx = context.current()
        endpoint = ctx.remote_vae_decoders.get(vae_type)
        if endpoint is not None:
            return (decode_remotely(endpoint, samples, vae_type),)
        folders = ctx.model_folders
        installed = set(files_of(FOLDER)) if folders is not None else set()
        name = next((file for file in VAE_FILES[vae_type] if file in installed), None)
        if name is None:
            raise InvalidInput("vae_type", f"no {vae_type} VAE is installed: put {VAE_FILES[vae_type][0]} in the "
                                           f"{FOLDER} folder (or install it from the models catalog)")
        (vae,) = VAELoader().load_vae(name)
        from comfy_nodes.diffusion.vae_nodes import VAEDecode

        return VAEDecode().decode(vae, samples)


def decode_remotely(endpoint: str, samples: Any, vae_type: str) -> Any:
    """The IMAGE ``[B, H, W, 3]`` (float32, 0..1, on the context's device) that ``endpoint`` decodes from the raw
    latent of ``samples`` (a LATENT dict) of the family ``vae_type``."""
    import torch
    from diffusers.utils.remote_utils import prepare_decode

    ndim, channels, scale, shift, dtype = REMOTE_LATENTS[vae_type]
    latent = samples.get("samples") if isinstance(samples, dict) else None
    if not isinstance(latent, torch.Tensor) or latent.ndim != ndim or latent.shape[1] != channels \
            or latent.numel() == 0:
        shape = list(latent.shape) if isinstance(latent, torch.Tensor) else f"a {type(samples).__name__}"
        raise InvalidInput("samples", f"a {vae_type} latent is [batch, {channels}, "
                                      f"{'frames, ' if ndim == 5 else ''}height, width], got {shape} (a latent of "
                                      "another model family?)")
    ctx = context.current()
    ctx.check_interrupt()
    scaled = ((latent.detach().float().cpu() - (shift or 0.0)) * scale).to(getattr(torch, dtype)).contiguous()
    request = prepare_decode(scaled, scaling_factor=scale, shift_factor=shift, output_type="pt",
                             partial_postprocess=False)
    body, headers = _post(endpoint, request["data"], request["params"], request["headers"])
    ctx.check_interrupt()
    return _image(body, headers, endpoint).to(ctx.device)


def _post(endpoint: str, data: bytes, params: dict[str, Any], headers: dict[str, str]) -> tuple[bytes, Any]:
    """POST ``data`` to ``endpoint`` with ``params`` in its query (lists repeated, as ``requests`` sends them)."""
    parts = urlsplit(endpoint)
    query = "&".join(q for q in (parts.query, urlencode(params, doseq=True)) if q)
    request = urllib.request.Request(urlunsplit(parts._replace(query=query)), data=data, headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read(), response.headers
    except urllib.error.HTTPError as exc:
        detail = exc.read(ERROR_BODY_CHARS).decode("utf-8", "replace").strip()
        raise ModelError(f"remote VAE decoder {endpoint} answered HTTP {exc.code} {exc.reason}"
                         + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            raise ModelError(f"remote VAE decoder {endpoint} did not answer within {TIMEOUT_S:g} s") from None
        raise ModelError(f"remote VAE decoder {endpoint} could not be reached: {reason}") from None


def _image(body: bytes, headers: Any, endpoint: str) -> Any:
    """The answer's tensor (``[B, 3, H, W]`` or ``[B, 3, F, H, W]`` in -1..1, or a ``uint8`` ``[B, H, W, 3]``) as
    an IMAGE ``[B, H, W, 3]`` float32 in 0..1."""
    import torch

    dtypes = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16, "uint8": torch.uint8}
    try:
        shape = [int(size) for size in json.loads(headers.get("shape") or "")]
        dtype = dtypes[str(headers.get("dtype"))]
        tensor = torch.frombuffer(bytearray(body), dtype=dtype).reshape(shape)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelError(f"remote VAE decoder {endpoint} did not answer with a tensor (shape "
                         f"{headers.get('shape')!r}, dtype {headers.get('dtype')!r}, {len(body)} bytes): "
                         f"{exc}") from None
    if tensor.dtype == torch.uint8 and tensor.ndim == 4 and tensor.shape[-1] == 3:
        return tensor.float() / 255.0
    if tensor.dtype == torch.uint8 or tensor.ndim not in (4, 5) or tensor.shape[1] != 3 or tensor.numel() == 0:
        raise ModelError(f"remote VAE decoder {endpoint} answered a {headers.get('dtype')} tensor of shape {shape}; "
                         "expected images [batch, 3, height, width] or a video [batch, 3, frames, height, width]")
    pixels = tensor.movedim(1, -1)
    if pixels.ndim == 5:
        pixels = pixels.reshape(-1, *pixels.shape[2:])
    return ((pixels.float() + 1.0) / 2.0).clamp_(0.0, 1.0).contiguous()


NODE_CLASS_MAPPINGS = {"RemoteVAEDecode": RemoteVAEDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"RemoteVAEDecode": "VAE Decode (Remote)"}
