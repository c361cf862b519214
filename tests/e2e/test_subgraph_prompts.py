"""Official workflow templates with subgraphs: the ``/prompt`` body the official editor sends for each, captured in
headless Chromium, against our importer's API graph of the same template (``visionatrix/flows/importers``).

One ``python -m visionatrix run`` and one page serve every template: the editor loads the template's UI workflow
(``app.loadGraphData``), is told to queue it (``app.queuePrompt``, what the Run button does), and the body of its
``POST /api/prompt`` is compared with ``load_flow(template, object_info)``, ``object_info`` being the one the editor
got from the same service. The server's answer does not matter here (these templates name models and input files
it does not have); only what the editor sent does.

Node ids need no mapping: the importer gives inner nodes the editor's execution ids, ``"<outer>:<inner>"``, after
the editor's renumbering of inner ids that collide with others (``subgraph_ids``). What is compared: the node set,
each node's ``class_type`` and its inputs (literal values and links ``[source id, output slot]``). ``_meta`` is not:
the editor copies ``cnr_id``/``ver`` from node properties into it, which says nothing about the graph.

The templates are ones whose node types all exist here (the editor drops the widget values of a node type it does
not know, so a template with missing types cannot be compared); between them they hold a nested subgraph, a
bypassed subgraph node, widgets promoted to the subgraph node (inner widgets and a widget input fed from outside),
links across the boundary both ways, and inner ids the editor renumbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.browser import PageWatch, chromium
from tests.e2e.service import running_service
from tests.e2e.test_comfy_editor import BOOT_TIMEOUT_MS
from visionatrix.flows import load_flow
from visionatrix.flows.importers.subgraph_ids import ordered_definitions

pytestmark = pytest.mark.slow

templates_json = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATES_DIR = Path(templates_json.__file__).parent / "templates"
POST_TIMEOUT_MS = 15_000


def _nested(graph: dict[str, Any]) -> None:
    # Subgraph 48 holds subgraph node 35 (the negative prompt), which holds four nodes of its own.
    assert sorted(node_id for node_id in graph if node_id.startswith("48:35:")) == [
        "48:35:40", "48:35:41", "48:35:42", "48:35:43"]
    assert graph["48:33"]["inputs"]["negative"] == ["48:35:43", 0]


def _bypassed(graph: dict[str, Any]) -> None:
    # Subgraph node 110 is bypassed (mode 4): none of its inner nodes is queued, and the PreviewImage it fed takes
    # the image that went into it.
    assert not [node_id for node_id in graph if node_id.startswith("110:")]
    assert graph["121"]["inputs"]["images"] == ["17", 0]


def _renumbered(graph: dict[str, Any]) -> None:
    # Inner nodes 43 and 49 of subgraph node 41 collide with top-level nodes 43 and 49: the editor renumbers them
    # from last_node_id (52). The promoted 'text' input is fed from outside, by top-level StringReplace 46.
    assert graph["41:53"]["class_type"] == graph["41:54"]["class_type"] == "CLIPTextEncode"
    assert "41:43" not in graph and "41:49" not in graph
    assert graph["41:53"]["inputs"]["text"] == ["46", 0]
    assert graph["41:3"]["inputs"]["positive"] == ["41:53", 0]


def _boundary(graph: dict[str, Any]) -> None:
    # Top-level LoadImage 17 feeds the subgraph's 'pixels' and 'mask'; the subgraph's IMAGE output feeds SaveImage 9.
    assert graph["47:38"]["inputs"]["pixels"] == ["17", 0]
    assert graph["47:38"]["inputs"]["mask"] == ["17", 1]
    assert graph["9"]["inputs"]["images"] == ["47:8", 0]


# template -> what it shows about subgraphs, checked on the editor's body (and, being equal, on ours)
CASES = {
    "image_netayume_lumina_t2i": _nested,
    "image_flux.1_fill_dev_OneReward": _bypassed,
    "image_newbieimage_exp0_1-t2i": _renumbered,
    "flux_fill_inpaint_example": _boundary,
}


def comparable(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node id -> class_type and inputs (``_meta`` left out, see the module docstring)."""
    return {node_id: {"class_type": node.get("class_type"), "inputs": node.get("inputs")}
            for node_id, node in graph.items()}


def differences(editor: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    lines = [f"editor only: {node_id} {editor[node_id]['class_type']}" for node_id in sorted(editor.keys() - ours)]
    lines += [f"ours only: {node_id} {ours[node_id]['class_type']}" for node_id in sorted(ours.keys() - editor)]
    for node_id in sorted(editor.keys() & ours):
        theirs, mine = editor[node_id], ours[node_id]
        if theirs["class_type"] != mine["class_type"]:
            lines.append(f"{node_id}: class_type {theirs['class_type']} (editor) != {mine['class_type']} (ours)")
        for name in sorted(theirs["inputs"].keys() | mine["inputs"].keys()):
            a, b = theirs["inputs"].get(name, "<absent>"), mine["inputs"].get(name, "<absent>")
            if a != b:
                lines.append(f"{node_id} ({theirs['class_type']}).{name}: editor {a!r:.80} != ours {b!r:.80}")
    return lines


async def editor_prompt(page: Page, name: str, workflow: dict[str, Any]) -> dict[str, Any]:
    """Loads ``workflow`` into the editor, queues it, and returns the ``prompt`` of the body it posted."""
    definitions = ordered_definitions(workflow)
    types = {node["type"] for holder in (workflow, *definitions.values()) for node in holder["nodes"]}
    unknown = await page.evaluate("(types) => types.filter(t => !(t in LiteGraph.registered_node_types))",
                                  sorted(types - definitions.keys()))
    assert not unknown, f"{name}: the editor does not know {unknown}; pick a template whose nodes all exist here"
    await page.evaluate("async ([wf, name]) => await window.app.loadGraphData(wf, true, true, name)",
                        [workflow, name])
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/prompt"),
                                   timeout=POST_TIMEOUT_MS) as posted:
        await page.evaluate("() => window.app.queuePrompt(0, 1)")
    body = (await posted.value).post_data_json
    assert isinstance(body, dict) and isinstance(body.get("prompt"), dict), f"{name}: posted {body!r:.300}"
    return body["prompt"]


async def test_the_editor_queues_subgraph_templates_as_our_importer_flattens_them(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        watch = PageWatch(service.url)
        async with chromium() as browser:
            page = watch.watch(await browser.new_page(viewport={"width": 1280, "height": 800}))
            await page.goto(f"{service.url}/comfy/")
            await page.wait_for_function("() => window.app?.graph && "
                                         "Object.keys(window.LiteGraph?.registered_node_types ?? {}).length",
                                         timeout=BOOT_TIMEOUT_MS)
            object_info = await (await page.request.get(f"{service.url}/comfy/api/object_info")).json()
            for name, check in CASES.items():
                workflow = json.loads((TEMPLATES_DIR / f"{name}.json").read_text())
                editor = await editor_prompt(page, name, workflow)
                flow = load_flow(workflow, object_info, name=name)
                assert not flow.missing_node_types, (name, flow.missing_node_types)
                check(editor)
                diff = differences(comparable(editor), comparable(flow.graph))
                assert not diff, f"{name}: the editor's /prompt body and our import differ:\n" + "\n".join(diff)
        assert not watch.page_errors, watch.report()
