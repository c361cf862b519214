"""The graph editor's Templates dialog (``docs/comfy-api.md``, "Templates"): our installed flows, and the official
ComfyUI templates when a ``comfyui-workflow-templates`` package is installed.

The editor reads its template index from ``templates/index.json`` (``index.<locale>.json`` first for another
language, and ``index_logo.json`` beside it) and fetches a template of the ``default`` module from
``templates/<name>.json`` (thumbnail ``templates/<name>-1.<ext>``), one of any other module from
``api/workflow_templates/<module>/<name>.json`` (thumbnail ``<name>.<ext>``).

- The official templates are the ``templates/`` folders of the installed ``comfyui_workflow_templates*`` packages;
  each entry of their index gains ``vixMissingNodeTypes`` (node types our registry lacks) and ``vixMissingModels``
  (the files its nodes' ``properties.models`` name that the model folders lack), also said in its description and
  as the tags ``Missing nodes`` / ``Missing models``. Their media live in other packages: an image thumbnail no
  installed package holds is a card with the template's name (an audio template without its sound is shown as that
  card too), and ``index_logo.json`` keeps only the logos found.
- Our flows (not hidden ones) are the category ``Installed flows`` of the group ``Visionatrix`` (module
  ``visionatrix``), listed first. A flow's template is a UI-format workflow with no nodes carrying the flow's API
  graph in ``extra.visionatrix``; our editor extension (``extensions/flow_templates.js``) opens such a workflow as
  that API graph, as ``?vix_flow=`` does.
"""

from __future__ import annotations

import asyncio
import html
import json
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.flows.flow import Flow
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.server.services import SERVICES
from visionatrix.server.static_files import confined_file

PACKAGE_PREFIX = "comfyui_workflow_templates"
MODULE = "visionatrix"
CATEGORY = "Visionatrix"
EDITOR_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
"""Node types the editor draws but never queues: no registry lacks them."""
INDEX_FILE = re.compile(r"^index(?:\.([A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})?))?\.json$")
LOGO_INDEX = "index_logo.json"
THUMBNAIL = re.compile(r"^(?P<name>[^/]+?)(?:-\d+)?\.(?:webp|png|jpe?g)$")
"""An official template's image thumbnail (``<name>-1.webp``): a card with its name when no package has it."""


@dataclass
class Requirements:
    """What one official template needs: its node types (outside its own subgraphs) and model files."""

    node_types: list[str]
    models: list[tuple[str, str]]
    """``(folder, file name)``."""


@dataclass
class TemplateLibrary:
    """The official templates' folders (found on first use) and what each template needs (read once)."""

    dirs: list[Path] | None = None
    _needs: dict[str, Requirements] = field(default_factory=dict)

    def template_dirs(self) -> list[Path]:
        if self.dirs is None:
            self.dirs = _installed_template_dirs()
        return self.dirs

    def find(self, relative: str) -> Path | None:
        for root in self.template_dirs():
            path = confined_file(root, relative)
            if path is not None and path.is_file():
                return path
        return None

    def requirements(self, name: str) -> Requirements | None:
        if name not in self._needs:
            path = self.find(f"{name}.json")
            if path is None:
                return None
            self._needs[name] = _read_requirements(path)
        return self._needs[name]


LIBRARY = web.AppKey("workflow_templates", TemplateLibrary)


def setup(app: web.Application, library: TemplateLibrary | None = None) -> None:
    app[LIBRARY] = library if library is not None else TemplateLibrary()


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/templates/{{file:.+}}", get_template_file)
    router.add_get(f"{prefix}/workflow_templates/{MODULE}/{{file}}", get_flow_template)


def _installed_template_dirs() -> list[Path]:
    dirs = []
    for module in sorted(pkgutil.iter_modules(), key=lambda info: info.name):
        if module.name.startswith(PACKAGE_PREFIX) and module.ispkg:
            folder = Path(getattr(module.module_finder, "path", "")) / module.name / "templates"
            if folder.is_dir():
                dirs.append(folder.resolve())
    return dirs


def _read_requirements(path: Path) -> Requirements:
    try:
        workflow = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return Requirements([], [])
    if not isinstance(workflow, dict):
        return Requirements([], [])
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    subgraph_ids = {sub.get("id") for sub in subgraphs if isinstance(sub, dict)}
    nodes = [*(workflow.get("nodes") or []),
             *(node for sub in subgraphs if isinstance(sub, dict) for node in sub.get("nodes") or [])]
    types: set[str] = set()
    models: set[tuple[str, str]] = set()
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            continue
        if node["type"] not in subgraph_ids and node["type"] not in EDITOR_ONLY_TYPES:
            types.add(node["type"])
        for model in (node.get("properties") or {}).get("models") or []:
            if isinstance(model, dict) and all(isinstance(model.get(key), str) for key in ("name", "directory")):
                models.add((model["directory"], model["name"]))
    return Requirements(sorted(types), sorted(models))


# --- the index ---------------------------------------------------------------------------------------------------


def build_index(locale: str | None, library: TemplateLibrary, flows: list[Flow], registry: NodeRegistry,
                folders: ModelFolders | None) -> list[dict[str, Any]] | None:
    """The categories of ``index[.<locale>].json``: the official ones, each template marked with what it lacks
    here, then ours. None for a locale the official templates lack (the editor then asks for English)."""
    official: list[dict[str, Any]] = []
    path = library.find(f"index.{locale}.json" if locale else "index.json")
    if path is None and locale:
        return None
    if path is not None:
        official = json.loads(path.read_bytes())
    for category in official:
        for template in category.get("templates") or []:
            _mark_missing(template, library, registry, folders)
            _card_for_missing_media(template, library)
    return [_flows_category(flows), *official]


def logo_index(library: TemplateLibrary) -> dict[str, str]:
    """``index_logo.json`` (provider: logo file) without the logos no installed package holds."""
    path = library.find(LOGO_INDEX)
    logos = json.loads(path.read_bytes()) if path is not None else {}
    return {provider: file for provider, file in logos.items()
            if isinstance(file, str) and library.find(file) is not None}


def _card_for_missing_media(template: dict[str, Any], library: TemplateLibrary) -> None:
    """A template whose media is not an image (an audio template's ``<name>-1.mp3``) and that no installed package
    holds is shown as an image: its card (the editor would otherwise draw a player for a file that is not there)."""
    if template.get("mediaType") in (None, "image"):
        return
    name, subtype = template.get("name"), template.get("mediaSubtype")
    if library.find(f"{name}-1.{subtype}") is None:
        template["mediaType"], template["mediaSubtype"] = "image", "webp"


def _mark_missing(template: dict[str, Any], library: TemplateLibrary, registry: NodeRegistry,
                  folders: ModelFolders | None) -> None:
    needs = library.requirements(str(template.get("name")))
    if needs is None:
        return
    nodes = [name for name in needs.node_types if name not in registry]
    models = [name for folder, name in needs.models if folders is None or folders.find(folder, name) is None]
    template["vixMissingNodeTypes"] = nodes
    template["vixMissingModels"] = models
    notes = ([f"Missing node types here: {', '.join(nodes)}."] if nodes else []) + (
        [f"Missing models here: {', '.join(models)}."] if models else [])
    if notes:
        template["description"] = " ".join([str(template.get("description") or ""), *notes]).strip()
        template["tags"] = [*(template.get("tags") or []), *(["Missing nodes"] if nodes else []),
                            *(["Missing models"] if models else [])]


def _flows_category(flows: list[Flow]) -> dict[str, Any]:
    return {"moduleName": MODULE, "category": CATEGORY, "title": "Installed flows", "type": "image",
            "icon": "icon-[lucide--workflow]", "isEssential": False,
            "templates": [_flow_entry(flow) for flow in flows if not flow.manifest.hidden]}


def _flow_entry(flow: Flow) -> dict[str, Any]:
    manifest = flow.manifest
    return {"name": flow.name, "title": manifest.display_name or flow.name,
            "description": manifest.description or manifest.display_name or flow.name,
            "mediaType": "image", "mediaSubtype": "svg", "tags": list(manifest.tags),
            "models": sorted({model.name for model in manifest.models}),
            "vixMissingNodeTypes": list(flow.missing_node_types)}


# --- handlers ----------------------------------------------------------------------------------------------------


async def get_template_file(request: web.Request) -> web.StreamResponse:
    """``templates/<file>``: the index (built), ``index_logo.json`` (its logos that exist) and the official templates'
    files; a missing image thumbnail of a template is a card with its name."""
    file = request.match_info["file"]
    services = request.app[SERVICES]
    library = request.app[LIBRARY]
    index = INDEX_FILE.match(file)
    if index is not None:
        flows = services.flows.flows()
        categories = await asyncio.to_thread(build_index, index.group(1), library, flows, services.registry,
                                             services.model_folders)
        if categories is None:
            raise NotFound("template index", file)
        return web.json_response(categories)
    if file == LOGO_INDEX:
        return web.json_response(await asyncio.to_thread(logo_index, library))
    path = await asyncio.to_thread(library.find, file)
    if path is not None:
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
    thumbnail = THUMBNAIL.match(file)
    if thumbnail is not None and await asyncio.to_thread(library.find, f"{thumbnail['name']}.json") is not None:
        return web.Response(text=_card_svg(thumbnail["name"]), content_type="image/svg+xml")
    raise NotFound("workflow template file", file)


async def get_flow_template(request: web.Request) -> web.Response:
    """``workflow_templates/visionatrix/<flow>.json`` (the flow as a template) or ``<flow>.svg`` (its card)."""
    file = request.match_info["file"]
    name, _, extension = file.rpartition(".")
    if extension not in ("json", "svg"):
        raise NotFound("flow template", file)
    flow = request.app[SERVICES].flows.get(name)
    if extension == "svg":
        return web.Response(text=_card_svg(flow.manifest.display_name or flow.name), content_type="image/svg+xml")
    return web.json_response(flow_workflow(flow))


def flow_workflow(flow: Flow) -> dict[str, Any]:
    """A UI-format workflow that our editor extension opens as the flow's API graph."""
    return {"last_node_id": 0, "last_link_id": 0, "nodes": [], "links": [], "groups": [], "config": {},
            "extra": {MODULE: {"flow": flow.name, "api_graph": flow.graph}}, "version": 0.4}


def _card_svg(title: str) -> str:
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512" viewBox="0 0 512 512">'
            '<rect width="512" height="512" fill="#1f2937"/>'
            '<text x="256" y="256" fill="#e5e7eb" font-family="sans-serif" font-size="32" text-anchor="middle">'
            f"{html.escape(title[:40])}</text></svg>")
