"""Catalog ``requires``: entries a model needs beside it (tokenizers), checked on load, installed with the model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import CORPUS
from tests.model_server import ModelServer, ServedFile, model_server_thread
from visionatrix.cli.main import main
from visionatrix.config import Settings
from visionatrix.errors import ModelError, NotFound
from visionatrix.models.catalog import ModelsCatalog, load_catalog_sync
from visionatrix.models.folders import ModelFolders
from visionatrix.models.hosts import DownloadPolicy
from visionatrix.models.installer import ModelInstaller

POLICY = DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), retries=1, backoff_s=0.01, timeout_s=5,
                        chunk_bytes=32 * 1024)
TOKENIZERS = {
    "T5-V1_1-XXL-Tokenizer": (
        "t5_tokenizer/tokenizer.json",
        "https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/main/tokenizer_2/tokenizer.json"),
    "Pile-T5-LLaMA-Tokenizer": (
        "llama_tokenizer/tokenizer.json", "https://huggingface.co/fal/AuraFlow-v0.3/resolve/main/tokenizer/tokenizer.json"),
    "HunyuanDiT-CLIP-Tokenizer": (
        "hydit_clip_tokenizer/vocab.txt",
        "https://huggingface.co/Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers/resolve/main/tokenizer/vocab.txt"),
}
REQUIRES = {"FLUX-CLIP-T5XXL-FP16": "T5-V1_1-XXL-Tokenizer", "FLUX-CLIP-T5XXL-FP8": "T5-V1_1-XXL-Tokenizer",
            "FLUX-1-Dev-FP8-CLIPS": "T5-V1_1-XXL-Tokenizer", "SD3.5-Large-FP8": "T5-V1_1-XXL-Tokenizer",
            "AuraFlow-v0.3": "Pile-T5-LLaMA-Tokenizer", "HunyuanDiT": "HunyuanDiT-CLIP-Tokenizer"}


def _entry(url: str = "https://example.org/m.safetensors", **fields: Any) -> dict[str, Any]:
    return {"url": url, "types": ["text_encoders"], **fields}


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


# --- loading ---------------------------------------------------------------------------------------------------


def test_requires_naming_no_entry_is_refused_naming_both(tmp_path: Path) -> None:
    source = _write(tmp_path, "c.json", {"Enc": _entry(requires=["Tok"])})
    with pytest.raises(ModelError, match=r"c\.json: entry 'Enc': requires 'Tok', but the catalog has no entry"):
        load_catalog_sync([source])
    with pytest.raises(ModelError, match=r"entry 'Enc': requires 'Tok'"):
        ModelsCatalog({"Enc": _entry(requires=["Tok"])})


@pytest.mark.parametrize("requires", ["Tok", [1], [""], {"Tok": 1}])
def test_requires_must_be_a_list_of_entry_names(requires: Any) -> None:
    with pytest.raises(ModelError, match="entry 'Enc': requires must be a list of catalog entry names"):
        ModelsCatalog({"Enc": _entry(requires=requires), "Tok": _entry()})


def test_a_required_entry_may_come_from_a_later_source(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.json", {"Enc": _entry(requires=["Tok"])})
    second = _write(tmp_path, "b.json", {"Tok": _entry("https://example.org/tok/tokenizer.json")})
    catalog = load_catalog_sync([first, second])
    assert catalog.get("Enc").requires == ("Tok",)
    assert catalog.raw["Enc"]["requires"] == ["Tok"]


def test_with_required_lists_each_entry_once_after_its_first_user_and_cycles_are_harmless() -> None:
    catalog = ModelsCatalog({"A": _entry(requires=["T", "U"]), "B": _entry(requires=["T"]),
                             "T": _entry(requires=["V", "A"]), "U": _entry(), "V": _entry(requires=["T"]),
                             "S": _entry(requires=["S"])})
    assert catalog.with_required(["B", "A"]) == ["B", "T", "V", "A", "U"]
    assert catalog.with_required(["A", "B"]) == ["A", "T", "V", "U", "B"]
    assert catalog.with_required(["S"]) == ["S"]
    assert catalog.get("S").requires == ()  # requiring itself is dropped
    with pytest.raises(NotFound):
        catalog.with_required(["Nope"])


def test_for_flow_adds_what_the_flows_models_require_also_for_an_older_manifest() -> None:
    catalog = ModelsCatalog({"Enc": _entry(requires=["Tok"]), "Tok": _entry(), "Vae": _entry()})
    old = {"models": [{"name": "Enc", "in_catalog": True}, {"name": "Vae", "in_catalog": True},
                      {"name": "x.safetensors", "in_catalog": False}]}
    assert [model.name for model in catalog.for_flow(old)] == ["Enc", "Tok", "Vae"]
    new = {"models": [*old["models"][:1], {"name": "Tok", "in_catalog": True, "implied_by": "Enc"},
                      *old["models"][1:]]}
    assert [model.name for model in catalog.for_flow(new)] == ["Enc", "Tok", "Vae"]


# --- the bundled catalog ---------------------------------------------------------------------------------------


def test_the_bundled_catalog_is_the_corpus_with_the_tokenizers_and_their_requires() -> None:
    bundled = load_catalog_sync(Settings().models_catalog)
    corpus = load_catalog_sync([str(CORPUS / "models_catalog.json")])
    assert set(bundled.raw) - set(corpus.raw) == set(TOKENIZERS)
    for model in corpus.models():
        mine = bundled.get(model.name)
        assert mine.requires == ((REQUIRES[model.name],) if model.name in REQUIRES else ()), model.name
        assert mine == type(model)(**{**model.__dict__, "requires": mine.requires})
    for name, (filename, url) in TOKENIZERS.items():
        model = bundled.get(name)
        assert (model.filename, model.url, model.folder) == (filename, url, "text_encoders")
        assert model.sha256 is None and model.homepage and not model.gated  # the hashes are not known
        assert "regexes" not in bundled.raw[name]  # no graph input names a tokenizer


def test_the_tokenizer_entries_are_those_the_loaders_name_installed_where_they_look() -> None:
    from visionatrix.diffusion.dit import loading
    from visionatrix.diffusion.text import hunyuan_tokenizers, llama_tokenizer, t5_tokenizer

    names = {t5_tokenizer.CATALOG_ENTRY, llama_tokenizer.CATALOG_ENTRY, hunyuan_tokenizers.BERT_CATALOG_ENTRY}
    assert names == set(TOKENIZERS)
    assert set(loading.TOKENIZER_FILES.values()) == {filename for filename, _url in TOKENIZERS.values()}


# --- installing ------------------------------------------------------------------------------------------------


async def test_the_installer_installs_what_a_model_requires_without_a_hash(tmp_path: Path) -> None:
    encoder, tokenizer = os.urandom(70_000), b'{"model": {"type": "Unigram"}}'
    folders = ModelFolders(tmp_path / "models")
    async with ModelServer() as server:
        catalog = ModelsCatalog({
            "Enc": {"url": server.serve("/t5.safetensors", ServedFile(encoder)), "types": ["text_encoders"],
                    "hash": hashlib.sha256(encoder).hexdigest(), "requires": ["Tok"]},
            "Tok": {"url": server.serve("/tokenizer.json", ServedFile(tokenizer)), "types": ["text_encoders"],
                    "filename": "t5_tokenizer/tokenizer.json"}})
        installer = ModelInstaller(folders, catalog, POLICY, max_concurrent=2)
        try:
            assert installer.start(["Enc"]) == ["Enc", "Tok"]
            ended = await installer.wait()
            assert {name: progress.state for name, progress in ended.items()} == {"Enc": "installed",
                                                                                  "Tok": "installed"}
            assert (tmp_path / "models" / "text_encoders" / "t5_tokenizer" / "tokenizer.json").read_bytes() == tokenizer
            assert (tmp_path / "models" / "text_encoders" / "t5.safetensors").read_bytes() == encoder
            assert installer.start(["Enc"]) == []  # both installed: nothing starts
        finally:
            await installer.aclose()


def test_models_install_flow_fetches_what_the_flows_models_require(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model, vocab = os.urandom(3000), b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n"
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "tiny_up.json").write_text(json.dumps({
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny-up.pth"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}))
    monkeypatch.chdir(tmp_path)
    for name, value in {"VIX_MODELS_DIR": tmp_path / "models", "VIX_FLOWS_DIRS": flows,
                        "VIX_USER_FLOWS_DIR": tmp_path / "user_flows", "VIX_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
                        "VIX_MODELS_CATALOG": tmp_path / "catalog.json"}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("VIX_EXTRA_MODEL_PATHS", "VIX_NODES_DIRS", "HF_TOKEN", "CIVITAI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with model_server_thread({"/tiny.pth": model, "/vocab.txt": vocab}) as server:
        (tmp_path / "catalog.json").write_text(json.dumps({
            "Tiny": {"url": server.url("/tiny.pth"), "types": ["upscale_models"], "requires": ["Vocab"],
                     "regexes": [{"class_name": "UpscaleModelLoader", "input_value": "^tiny-up"}]},
            "Vocab": {"url": server.url("/vocab.txt"), "types": ["text_encoders"],
                      "filename": "hydit_clip_tokenizer/vocab.txt"}}))
        assert main(["models", "list", "--json", "--flow", "tiny_up"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(view["name"], view["state"]) for view in listed] == [("Tiny", "missing"), ("Vocab", "missing")]
        code = main(["models", "install", "--flow", "tiny_up"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "Vocab: installed" in err
    assert (tmp_path / "models" / "text_encoders" / "hydit_clip_tokenizer" / "vocab.txt").read_bytes() == vocab
    assert (tmp_path / "models" / "upscale_models" / "tiny.pth").read_bytes() == model
