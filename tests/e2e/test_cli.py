"""Acceptance tests over the real command line (``python -m visionatrix`` in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.corpus import VIXFLOWS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
CORPUS = VIXFLOWS


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "visionatrix", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_run_flow_by_name_writes_outputs_and_reports_progress(tmp_path):
    out = tmp_path / "out"
    proc = cli("run-flow", "web_resize_sharpen", "--input", f"image={SAMPLE}", "--param", "width=200",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = [Path(line) for line in proc.stdout.split()]
    assert written == [out / "web_00001_.png"]
    with Image.open(written[0]) as image:
        assert image.width == 200
        assert json.loads(image.text["prompt"])["5"]["class_type"] == "ImageScale"
    assert "[1/6]" in proc.stderr and "done in" in proc.stderr and "finished in" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_flow_lists_every_parameter_problem(tmp_path):
    proc = cli("run-flow", "flows/color_grade.json", "--input", f"image={SAMPLE}", "--param", "brightness=9",
               "--param", "contrast=abc", "--param", "bogus=1", "--out", str(tmp_path))
    assert proc.returncode == 2
    for name in ("brightness", "contrast", "bogus"):
        assert f"- {name}:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_flow_lists_every_validation_problem_of_a_graph(tmp_path):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
             "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "magic",
                                                          "width": -5, "height": 10, "crop": "disabled"}},
             "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 1}},
             "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(graph))
    proc = cli("run-flow", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "node 2 (ImageScale) input 'upscale_method'" in proc.stderr
    assert "node 2 (ImageScale) input 'width'" in proc.stderr
    assert "node 3 (ImageBlur) input 'sigma'" in proc.stderr
    assert "node 1 (LoadImage)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_flow_names_the_input_of_a_bad_image(tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not pixels")
    proc = cli("run-flow", "pencil_sketch", "--input", f"image={not_image}", "--out", str(tmp_path / "out"))
    assert proc.returncode in (1, 2)
    assert "LoadImage" in proc.stderr and "'image'" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = cli("run-flow", "pencil_sketch", "--input", f"image={tmp_path / 'nope.png'}", "--out", str(tmp_path))
    assert missing.returncode == 2 and "nope.png" in missing.stderr and "Traceback" not in missing.stderr


def test_run_flow_refuses_images_over_the_pixel_limit(tmp_path):
    proc = cli("run-flow", "pencil_sketch", "--input", f"image={SAMPLE}", "--max-image-pixels", "1000",
               "--out", str(tmp_path / "out"))
    assert proc.returncode in (1, 2)
    assert "'image'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_flow_info_prints_the_manifest_of_a_corpus_flow():
    proc = cli("flow-info", str(CORPUS / "sdxl_lighting.json"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["name"] == "sdxl_lighting"
    assert {"name": "steps_number", "type": "list"}.items() <= next(
        i for i in info["inputs"] if i["name"] == "steps_number").items()
    assert info["missing_node_types"] == []  # the diffusion pack (issue 13) runs every node of the SDXL flows
    assert info["models"]


def test_flow_info_on_unreadable_files_exits_non_zero_with_the_reason(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"class_type": ')
    proc = cli("flow-info", str(bad))
    assert proc.returncode == 2
    assert "bad.json" in proc.stderr and "Traceback" not in proc.stderr
    missing = cli("flow-info", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "absent.json" in missing.stderr


def test_nodes_lists_node_types_and_json_gives_object_info():
    proc = cli("nodes")
    assert proc.returncode == 0
    assert any(line.startswith("SaveImage ") for line in proc.stdout.splitlines())
    as_json = cli("nodes", "--json")
    info = json.loads(as_json.stdout)
    assert info["ImageScale"]["input_order"]["required"][0] == "image"


EXTRA_PACK = '''
import comfy.utils


class Stamp:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "level": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stamp"
    CATEGORY = "third party"

    def stamp(self, image, level):
        comfy.utils.ProgressBar(1).update(1)
        out = image.clone()
        out[:, :8, :8, :] = level
        return (out,)


NODE_CLASS_MAPPINGS = {"ThirdPartyStamp": Stamp}
'''


def test_extra_node_folders_from_flag_and_environment_load_third_party_packs(tmp_path):
    pack = tmp_path / "packs" / "comfyui-stamp"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(EXTRA_PACK)
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": ""},
                   "_meta": {"title": "input;Image;custom_id=image"}},
             "2": {"class_type": "ThirdPartyStamp", "inputs": {"image": ["1", 0], "level": 1.0}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "stamped"}}}
    flow = tmp_path / "stamp.json"
    flow.write_text(json.dumps(graph))
    out = tmp_path / "out"
    proc = cli("run-flow", str(flow), "--nodes-dir", str(tmp_path / "packs"), "--input", f"image={SAMPLE}",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "stamped_00001_.png") as image:
        assert image.getpixel((2, 2)) == (255, 255, 255)
    env_proc = subprocess.run([sys.executable, "-m", "visionatrix", "nodes"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                           "VIX_NODES_DIRS": f"/nonexistent;{tmp_path / 'packs'}"})
    assert "ThirdPartyStamp" in env_proc.stdout
    without = cli("run-flow", str(flow), "--input", f"image={SAMPLE}", "--out", str(out))
    assert without.returncode == 2 and "ThirdPartyStamp" in without.stderr


def ui_workflow() -> dict:
    """A ComfyUI UI-format workflow: a titled LoadImage, a bypassed blur, an invert, a note and a save."""
    return {
        "last_node_id": 5, "last_link_id": 3, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "title": "input;Photo;custom_id=photo",
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK"}],
             "widgets_values": ["example.png", "image"]},
            {"id": 2, "type": "ImageBlur", "mode": 4,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], "widgets_values": [5, 2.0]},
            {"id": 3, "type": "ImageInvert", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 2}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}], "widgets_values": []},
            {"id": 4, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 3}],
             "widgets_values": ["inverted"]},
            {"id": 5, "type": "Note", "mode": 0, "widgets_values": ["just a note"]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"]],
    }


def test_a_comfyui_ui_workflow_gives_its_manifest_and_runs(tmp_path):
    path = tmp_path / "invert_workflow.json"
    path.write_text(json.dumps(ui_workflow()))
    info = cli("flow-info", str(path))
    assert info.returncode == 0, info.stderr
    manifest = json.loads(info.stdout)
    assert manifest["name"] == "invert_workflow"
    assert [(i["name"], i["type"]) for i in manifest["inputs"]] == [("photo", "image")]
    assert manifest["missing_node_types"] == []
    out = tmp_path / "out"
    proc = cli("run-flow", str(path), "--input", f"photo={SAMPLE}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "inverted_00001_.png") as inverted, Image.open(SAMPLE) as original:
        a, b = inverted.convert("RGB").getpixel((5, 5)), original.convert("RGB").getpixel((5, 5))
        assert all(abs(x + y - 255) <= 1 for x, y in zip(a, b))


def test_output_cut_short_by_the_reader_is_not_an_error():
    proc = subprocess.Popen([sys.executable, "-m", "visionatrix", "nodes", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in stderr


_READER_GONE_AFTER_WRITE = """
import os, sys
import visionatrix.cli.nodes_list as nodes_list
from visionatrix.cli.main import main
read_end, write_end = os.pipe()
os.dup2(write_end, sys.stdout.fileno())
def command(args, settings):
    sys.stdout.write("a line still in the buffer when the command returns")
    os.close(read_end)  # the reader goes away before anything is flushed
    return 0
nodes_list.command = command
sys.exit(main(["nodes"]))
"""


def test_reader_gone_before_the_last_flush_is_not_an_error():
    proc = subprocess.run([sys.executable, "-c", _READER_GONE_AFTER_WRITE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
