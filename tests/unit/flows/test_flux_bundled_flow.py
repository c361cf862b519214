"""The bundled Flux flow (``flux_text_to_image``) with tiny random-weight Flux.1 dev, CLIP-L, T5 and VAE files
under the catalog's file names: its form, its models, how the form binds, and its image against a direct loop over
the same diffusers modules (tokens, noise, the resolution's shift, Euler, the VAE)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import dit_files
from tests.flow_models import corpus_flow_models, write_flow_models
from tests.flow_runs import run_flow
from visionatrix.flows import FlowStore, bind_params
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]
FLOW = ROOT / "flows" / "flux_text_to_image.json"
NAME = "flux_text_to_image"
PROMPT = "a photo of a red cat on the table"
FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159
SMALL = {"prompt": PROMPT, "width": 320, "height": 256, "steps": 2, "guidance": 3.5,
         "diffusion_precision": "default"}


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


@pytest.fixture(scope="module")
def store(registry: NodeRegistry) -> FlowStore:
    return FlowStore([ROOT / "flows"], registry.object_info())


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux_models")
    write_flow_models(corpus_flow_models(FLOW), root / "models", root / "cache")
    return root / "models"


@pytest.fixture(scope="module")
def model_folders(models_root: Path) -> ModelFolders:
    return ModelFolders(models_root)


def run(registry, store, folders, tmp_path: Path, **params) -> np.ndarray:
    (image,) = run_flow(registry, store, tmp_path, NAME, {**SMALL, **params}, None, folders)
    return np.asarray(image.convert("RGB")).astype(np.int16)


def test_the_form_offers_prompt_size_steps_guidance_and_precision(store: FlowStore):
    flow = store.get(NAME)
    inputs = {i.name: i for i in flow.manifest.inputs}
    assert list(inputs) == ["prompt", "width", "height", "steps", "guidance", "diffusion_precision"]
    assert not inputs["prompt"].optional and inputs["width"].integer and inputs["width"].step == 64
    assert {name for name, i in inputs.items() if i.advanced} == {"steps", "guidance", "diffusion_precision"}
    assert flow.manifest.is_seed_supported and flow.missing_node_types == []


def test_its_models_are_the_catalogs_flux_dev_files_and_t5s_tokenizer():
    models = corpus_flow_models(FLOW)
    assert all(model["in_catalog"] for model in models)
    assert {model["name"] for model in models} == {"FLUX-1-Dev", "FLUX-CLIP-T5XXL-FP16", "FLUX-CLIP-CLIP_L",
                                                    "FLUX-VAE", "T5-V1_1-XXL-Tokenizer"}


def test_the_form_binds_to_the_latent_the_shift_the_schedule_the_guidance_and_the_noise(store: FlowStore):
    prompt = bind_params(store.get(NAME), {**SMALL, "seed": 42, "guidance": 5.0}, {})
    by_class = {node["class_type"]: node["inputs"] for node in prompt.values()}
    values = {node["inputs"].get("custom_id"): node["inputs"] for node in prompt.values()
              if node["class_type"].startswith("VixUi")}
    assert values["width"]["value"] == 320 and values["height"]["value"] == 256
    assert values["steps"]["value"] == 2 and values["guidance"]["value"] == 5.0
    assert values["prompt"]["text"] == PROMPT
    assert by_class["RandomNoise"]["noise_seed"] == 42
    width_node = next(i for i, n in prompt.items() if n["inputs"].get("custom_id") == "width")
    for consumer in ("EmptySD3LatentImage", "ModelSamplingFlux"):
        assert by_class[consumer]["width"] == [width_node, 0]


def _reference(models_root: Path, seed: int, width: int, height: int, steps: int, guidance: float) -> np.ndarray:
    """The image a direct loop over the tiny diffusers modules gives (RGB, 0-255)."""
    from visionatrix.diffusion.dit import calls

    files = dit_files.modules()
    t5_ids, clip_ids = _token_ids(models_root / "text_encoders" / "t5_tokenizer" / "tokenizer.json")
    with torch.no_grad():
        context = files.t5(input_ids=t5_ids).last_hidden_state
        pooled = files.clip_l(input_ids=clip_ids).pooler_output
        torch.manual_seed(seed)
        h, w = height // 8, width // 8
        x = torch.randn(1, 16, h, w)
        mu = 0.5 + (width * height / 256 - 256) * (1.15 - 0.5) / (4096 - 256)
        shift = math.exp(mu)
        sigmas = [shift * t / (1 + (shift - 1) * t) for t in (1 - i / steps for i in range(steps))] + [0.0]
        for sigma, sigma_next in itertools.pairwise(sigmas):
            v = files.flux["dev"](hidden_states=calls.pack(x), encoder_hidden_states=context,
                                  pooled_projections=pooled, timestep=torch.tensor([sigma]),
                                  img_ids=calls.image_ids(h, w), txt_ids=torch.zeros(context.shape[1], 3),
                                  guidance=torch.tensor([guidance]), return_dict=False)[0]
            x = x + (sigma_next - sigma) * calls.unpack(v, h, w)
        image = files.vae.decode(x / FLUX_SCALE + FLUX_SHIFT).sample
    pixels = ((image[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1) * 255
    return pixels.numpy().astype(np.int16)


def _token_ids(t5_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 ids (words, end token 1, padded with 0 to 256) and CLIP-L ids (start, words, end, padded with the end)."""
    from visionatrix.diffusion.text.t5_tokenizer import t5_tokenizer
    from visionatrix.diffusion.text.vocab import clip_tokenizer

    tokenizer = t5_tokenizer(t5_file)
    ids = [i for word in PROMPT.split() for i in tokenizer(word, add_special_tokens=False)["input_ids"]] + [1]
    t5 = torch.tensor([ids + [0] * (256 - len(ids))])
    clip = [49406, *clip_tokenizer()(PROMPT, add_special_tokens=False)["input_ids"], 49407]
    return t5, torch.tensor([clip + [49407] * (77 - len(clip))])


def test_the_image_is_the_direct_loops_and_follows_seed_and_guidance(registry, store, models_root, model_folders,
                                                                     tmp_path):
    first = run(registry, store, model_folders, tmp_path / "a", seed=1)
    assert first.shape == (256, 320, 3) and first.std() > 1.0
    reference = _reference(models_root, 1, 320, 256, 2, 3.5)
    assert np.abs(first - reference).max() <= 2, "the flow's image is not the direct loop's"
    assert np.array_equal(first, run(registry, store, model_folders, tmp_path / "b", seed=1))
    assert not np.array_equal(first, run(registry, store, model_folders, tmp_path / "c", seed=2))
    assert np.abs(first - run(registry, store, model_folders, tmp_path / "d", seed=1, guidance=8.0)).mean() > 1


def test_the_default_fp8_precision_runs_close_to_full_precision(registry, store, model_folders, tmp_path):
    full = run(registry, store, model_folders, tmp_path / "a", seed=3)
    fp8 = run(registry, store, model_folders, tmp_path / "b", seed=3, diffusion_precision="fp8_e4m3fn")
    assert fp8.shape == full.shape and not np.array_equal(fp8, full)
    assert np.abs(fp8 - full).mean() < 0.25 * np.abs(full - full.mean()).mean()
