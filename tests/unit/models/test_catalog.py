"""The models catalog: Visionatrix's format from files or http(s) URLs, merged in order, checked entry by entry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.corpus import CORPUS
from visionatrix.errors import ModelError, NotFound
from visionatrix.models.catalog import MAX_CATALOG_BYTES, ModelsCatalog, load_catalog, load_catalog_sync

SHA = hashlib.sha256(b"tiny").hexdigest()


def _entry(**fields: Any) -> dict[str, Any]:
    return {"regexes": [{"input_value": "^tiny"}], "url": "https://example.org/files/tiny%20model.pth",
            "hash": SHA, "types": ["upscale_models"], "file_size": 4, **fields}


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_the_corpus_catalog_loads_with_every_entry() -> None:
    catalog = load_catalog_sync([str(CORPUS / "models_catalog.json")])
    assert len(catalog) == 113 and len(catalog.raw) == 113
    assert {"huggingface.co", "civitai.com"} <= catalog.hosts()
    pencil = catalog.get("Flux1-Lora-PencilBox")
    assert pencil.sha256 == "4e606bff0e116455745b90a87abb77ca3942c1dcbce6c718c48aae19beca5d03"
    assert pencil.gated and pencil.folder == "loras" and pencil.filename == "pencilbox.safetensors"
    flux = catalog.get("FLUX-1-Dev")
    assert flux.folder == "diffusion_models" and flux.folders == ("diffusion_models",)
    assert catalog.get("SD3.5-Medium").filename == "sd3.5_medium.safetensors"  # no filename: the URL's basename
    rife = catalog.get("Rife-47")
    assert rife.folder == "" and rife.folders == ("",) and rife.filename.startswith("custom_nodes/")


def test_a_model_is_described_from_its_entry(tmp_path: Path) -> None:
    catalog = load_catalog_sync([_write(tmp_path, "c.json", {"Tiny": _entry(hash=SHA.upper(), types=["unet"])})])
    model = catalog.get("Tiny")
    assert model.name == "Tiny" and model.url.endswith("tiny%20model.pth")
    assert model.sha256 == SHA and model.filename == "tiny model.pth" and model.folder == "diffusion_models"
    assert model.file_size == 4 and model.homepage is None and model.gated is False and model.types == ("unet",)
    assert catalog.raw["Tiny"]["hash"] == SHA and catalog.raw["Tiny"]["filename"] == "tiny model.pth"
    with pytest.raises(NotFound):
        catalog.get("Nope")


def test_later_sources_replace_earlier_entries_of_the_same_name(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.json", {"Tiny": _entry(), "Other": _entry(filename="o.pth")})
    second = _write(tmp_path, "b.json", {"Tiny": _entry(filename="replaced.pth")})
    catalog = load_catalog_sync([first, second])
    assert [m.name for m in catalog.models()] == ["Other", "Tiny"]
    assert catalog.get("Tiny").filename == "replaced.pth"


def test_an_entry_without_url_is_kept_but_has_no_url(tmp_path: Path) -> None:
    catalog = load_catalog_sync([_write(tmp_path, "c.json", {"Local": _entry(url=None, filename="l.pth")})])
    assert catalog.get("Local").url == "" and catalog.hosts() == set()


@pytest.mark.parametrize(("data", "named"), [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object of entries"),
    ({"Bad": "text"}, "entry 'Bad': expected an object"),
    ({"Bad": _entry(regexes=[{"input_value": "(unclosed"}])}, "entry 'Bad': bad regex"),
    ({"Bad": _entry(regexes=[{"input_vlue": "x"}])}, "entry 'Bad': each regex"),
    ({"Bad": _entry(hash="abc")}, "entry 'Bad': hash must be a sha256"),
    ({"Bad": _entry(filename="../../etc/x.pth")}, "entry 'Bad': filename"),
    ({"Bad": _entry(url=None)}, "entry 'Bad': has neither a url nor a filename"),
    ({"Bad": _entry(url="ftp://example.org/x.pth")}, "entry 'Bad': url must be an http(s) URL"),
    ({"Bad": _entry(types="loras")}, "entry 'Bad': types must be a list"),
    ({"Bad": _entry(file_size=-1)}, "entry 'Bad': file_size"),
    ({"Bad": _entry(gated="yes")}, "entry 'Bad': gated"),
])
def test_a_wrong_catalog_is_a_model_error_naming_the_source_and_entry(tmp_path: Path, data: Any,
                                                                       named: str) -> None:
    source = _write(tmp_path, "bad.json", data)
    with pytest.raises(ModelError) as caught:
        load_catalog_sync([source])
    assert source in str(caught.value) and named in str(caught.value)


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_catalog_sync([str(tmp_path / "absent.json")])


def test_for_flow_gives_the_catalog_models_a_flow_names_once_in_flow_order(tmp_path: Path) -> None:
    catalog = ModelsCatalog({"A": _entry(filename="a.pth"), "B": _entry(filename="b.pth")})
    info = {"models": [{"name": "B", "in_catalog": True}, {"name": "x.pth", "in_catalog": False},
                       {"name": "A", "in_catalog": True}, {"name": "B", "in_catalog": True},
                       {"name": "Gone", "in_catalog": True}]}
    assert [model.name for model in catalog.for_flow(info)] == ["B", "A"]
    assert catalog.for_flow({"models": []}) == []


async def test_catalogs_load_from_urls_and_files_in_order(aiohttp_server: Any, tmp_path: Path) -> None:
    served = {"Tiny": _entry(filename="from-url.pth"), "Remote": _entry(filename="r.pth")}

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/catalog.json":
            return web.json_response(served)
        if request.path == "/huge.json":
            return web.Response(body=b" " * (MAX_CATALOG_BYTES + 1), content_type="application/json")
        if request.path == "/bad.json":
            return web.Response(text="{oops", content_type="application/json")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    server = await aiohttp_server(app)
    url = str(server.make_url("/catalog.json"))
    local = _write(tmp_path, "local.json", {"Tiny": _entry(filename="from-file.pth")})
    catalog = await load_catalog([url, local])
    assert catalog.get("Tiny").filename == "from-file.pth" and catalog.get("Remote").filename == "r.pth"
    assert (await load_catalog([local, url])).get("Tiny").filename == "from-url.pth"
    for path, why in (("/missing.json", "HTTP 404"), ("/huge.json", "larger than"), ("/bad.json", "not valid JSON")):
        bad = str(server.make_url(path))
        with pytest.raises(ModelError) as caught:
            await load_catalog([bad])
        assert bad in str(caught.value) and why in str(caught.value)
