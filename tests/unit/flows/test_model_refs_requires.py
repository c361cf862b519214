"""Catalog entries a flow's models require (tokenizers) among its models: once, after the first model needing them,
never graph inputs (graph_names leaves them alone), found like any model; the corpus flows list their tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.flows.helpers import VIXFLOWS, node
from visionatrix.config import Settings
from visionatrix.errors import ModelError
from visionatrix.flows import installed
from visionatrix.flows.importers import load_flow, model_refs
from visionatrix.flows.importers.model_refs import CompiledCatalog, derive_models
from visionatrix.models.catalog import ModelsCatalog, load_catalog_sync
from visionatrix.models.folders import ModelFolders
from visionatrix.models.graph_names import installed_names

HF = "https://huggingface.co/org/repo/resolve/main/"
CATALOG: dict[str, dict[str, Any]] = {
    "T5": {"regexes": [{"input_value": "^t5xxl"}], "url": HF + "t5xxl_fp16.safetensors", "types": ["text_encoders"],
           "requires": ["Tok"]},
    "T5-FP8": {"regexes": [{"input_value": "^fp8_t5"}], "url": HF + "t5xxl_fp8.safetensors",
               "types": ["text_encoders"], "requires": ["Tok"]},
    "Ckpt": {"regexes": [{"input_value": "^ckpt"}], "url": HF + "ckpt.safetensors", "types": ["checkpoints"],
             "requires": ["Vocab", "Extra"]},
    "Vae": {"regexes": [{"input_value": "^vae"}], "url": HF + "vae.safetensors", "types": ["vae"]},
    "Tok": {"url": HF + "tokenizer_2/tokenizer.json", "filename": "t5_tokenizer/tokenizer.json",
            "types": ["text_encoders"]},
    "Vocab": {"url": HF + "tokenizer/vocab.txt", "types": ["text_encoders"], "requires": ["Ckpt"]},
    "Extra": {"regexes": [{"input_value": "^extra"}], "url": HF + "extra.safetensors", "types": ["vae"]},
}
CORPUS_TOKENIZERS = {
    "flux1_dev": ("FLUX-CLIP-T5XXL-FP16", "T5-V1_1-XXL-Tokenizer", "t5_tokenizer/tokenizer.json"),
    "sd3_5_large": ("FLUX-CLIP-T5XXL-FP16", "T5-V1_1-XXL-Tokenizer", "t5_tokenizer/tokenizer.json"),
    "pixart_e": ("FLUX-CLIP-T5XXL-FP8", "T5-V1_1-XXL-Tokenizer", "t5_tokenizer/tokenizer.json"),
    "auraflow": ("AuraFlow-v0.3", "Pile-T5-LLaMA-Tokenizer", "llama_tokenizer/tokenizer.json"),
    "hunyuan_dit": ("HunyuanDiT", "HunyuanDiT-CLIP-Tokenizer", "hydit_clip_tokenizer/vocab.txt"),
}


def _graph() -> dict[str, Any]:
    return {"1": node("CLIPLoader", {"clip_name": "t5xxl_fp16.safetensors"}),
            "2": node("VAELoader", {"vae_name": "vae.safetensors"}),
            "3": node("CLIPLoader", {"clip_name": "fp8_t5.safetensors"}),
            "4": node("CheckpointLoaderSimple", {"ckpt_name": "ckpt.safetensors"}),
            "5": node("VAELoader", {"vae_name": "extra.safetensors"})}


def test_required_entries_are_listed_once_after_the_first_model_needing_them() -> None:
    refs = derive_models(_graph(), CompiledCatalog(CATALOG))
    assert [(ref.name, ref.node_id, ref.implied_by) for ref in refs] == [
        ("T5", "1", None), ("Tok", "", "T5"), ("Vae", "2", None), ("T5-FP8", "3", None), ("Ckpt", "4", None),
        ("Vocab", "", "Ckpt"), ("Extra", "5", None)]  # Extra: the graph loads it itself; Vocab -> Ckpt: a cycle
    tok = refs[1]
    assert (tok.input, tok.value, tok.filename, tok.in_catalog) == ("", "t5_tokenizer/tokenizer.json",
                                                                    "t5_tokenizer/tokenizer.json", True)
    assert tok.url == HF + "tokenizer_2/tokenizer.json" and tok.types == ["text_encoders"]
    assert refs[5].value == "vocab.txt"  # no filename: the URL's last part
    assert [ref.name for ref in derive_models(_graph(), CompiledCatalog(CATALOG), implied=False)] == [
        "T5", "Vae", "T5-FP8", "Ckpt", "Extra"]


def test_a_flows_info_marks_implied_models_and_keeps_them_out_of_graph_inputs() -> None:
    flow = load_flow({**_graph(), "9": node("SaveImage", {"images": ["4", 0]})}, {}, models_catalog=CATALOG,
                     name="t")
    models = flow.info()["models"]
    implied = [model for model in models if model.get("implied_by")]
    assert [(model["name"], model["implied_by"], model["node_id"], model["input"]) for model in implied] == [
        ("Tok", "T5", "", ""), ("Vocab", "Ckpt", "", "")]
    assert "implied_by" not in models[0]


def test_a_required_entry_the_catalog_lacks_is_refused_naming_both() -> None:
    with pytest.raises(ModelError, match=r"entry 'T5': requires 'Tok', but the catalog has no entry"):
        CompiledCatalog({"T5": CATALOG["T5"]})


@pytest.mark.parametrize("implied_value", [None, ""])
def test_graph_names_never_writes_an_implied_entry_into_the_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  implied_value: str | None) -> None:
    if implied_value is not None:  # not only because an implied reference's value is the catalog's file name
        built = model_refs._implied_ref
        monkeypatch.setattr(model_refs, "_implied_ref",
                            lambda *args: built(*args).model_copy(update={"value": implied_value}))
    catalog = ModelsCatalog(CATALOG)
    for folder, name in (("text_encoders", "t5xxl_fp16.safetensors"), ("text_encoders", "t5_tokenizer/tokenizer.json"),
                         ("checkpoints", "ckpt.safetensors"), ("text_encoders", "vocab.txt")):
        (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"x")
    graph = {"1": node("CLIPLoader", {"clip_name": "t5xxl_other.safetensors"}),
             "4": node("CheckpointLoaderSimple", {"ckpt_name": "ckpt_v2.safetensors"})}
    resolved, changes = installed_names(graph, catalog, ModelFolders(tmp_path))
    assert changes == [("1", "clip_name", "t5xxl_other.safetensors", "t5xxl_fp16.safetensors"),
                       ("4", "ckpt_name", "ckpt_v2.safetensors", "ckpt.safetensors")]
    assert set(resolved) == {"1", "4"}
    assert resolved["1"]["inputs"] == {"clip_name": "t5xxl_fp16.safetensors"}
    assert resolved["4"]["inputs"] == {"ckpt_name": "ckpt.safetensors"}


def test_a_flow_needing_a_tokenizer_is_runnable_only_once_the_tokenizer_is_there(tmp_path: Path) -> None:
    models = load_flow({"1": _graph()["1"], "9": node("SaveImage", {"images": ["1", 0]})}, {},
                       models_catalog=CATALOG, name="t").info()["models"]
    folders = ModelFolders(tmp_path)
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "t5xxl_fp16.safetensors").write_bytes(b"x")
    assert installed.missing_models(models, folders) == ["t5_tokenizer/tokenizer.json"]
    (tmp_path / "text_encoders" / "t5_tokenizer").mkdir()
    (tmp_path / "text_encoders" / "t5_tokenizer" / "tokenizer.json").write_bytes(b"{}")
    assert installed.missing_models(models, folders) == []


@pytest.mark.parametrize("stem", sorted(CORPUS_TOKENIZERS))
def test_corpus_flows_list_their_tokenizer_once_after_the_model_needing_it(stem: str) -> None:
    catalog = load_catalog_sync(Settings().models_catalog)
    models = load_flow(VIXFLOWS / f"{stem}.json", {}, models_catalog=catalog.raw).info()["models"]
    needs, tokenizer, filename = CORPUS_TOKENIZERS[stem]
    names = [model["name"] for model in models]
    assert names.count(tokenizer) == 1 and names[names.index(tokenizer) - 1] == needs
    ref = models[names.index(tokenizer)]
    assert (ref["implied_by"], ref["node_id"], ref["input"], ref["value"]) == (needs, "", "", filename)
    assert [model.name for model in catalog.for_flow({"models": models})].count(tokenizer) == 1  # install --flow
