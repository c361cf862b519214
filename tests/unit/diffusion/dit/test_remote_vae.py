"""RemoteVAEDecode's remote mode against a local endpoint speaking Hugging Face's hybrid-inference protocol.

The endpoint (an ``http.server`` thread, nothing leaves the machine) reads the request as diffusers' hybrid-inference
endpoints do: the latent's raw bytes with ``shape``/``dtype`` query parameters, undoes ``scaling_factor`` and
``shift_factor`` and decodes with the tiny 16-channel VAE of ``tests/dit_files.py``; it records what it received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

from comfy_nodes.diffusion import remote_vae
from comfy_nodes.diffusion.remote_vae import VAE_FILES, RemoteVAEDecode
from tests import dit_files
from tests.unit.diffusion.dit.conftest import node_instances
from visionatrix.config import REMOTE_VAE_TYPES, InvalidSetting, load_settings
from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes.context import NodeContext, use

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
Answer = Callable[[torch.Tensor, dict[str, list[str]]], tuple[int, dict[str, str], bytes]]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The endpoints are on 127.0.0.1: a proxy from the environment must not carry the requests."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.contiguous()
    return (flat.view(torch.int16) if flat.dtype == torch.bfloat16 else flat).numpy().tobytes()


def vae_answer(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
    """The protocol's decode: ``latent / scaling_factor + shift_factor`` through the VAE, sent back as float32."""
    z = latent.float() / float(query["scaling_factor"][0])
    if "shift_factor" in query:
        z = z + float(query["shift_factor"][0])
    with torch.no_grad():
        decoded = dit_files.modules().vae.decode(z).sample
    return 200, {"shape": json.dumps(list(decoded.shape)), "dtype": "float32"}, tensor_bytes(decoded)


@contextlib.contextmanager
def endpoint(answer: Answer = vae_answer) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local endpoint's URL and the requests it received (query, headers, the latent as decoded from the body)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            shape = [int(size) for size in query["shape"]]
            latent = torch.frombuffer(bytearray(body), dtype=DTYPES[query["dtype"][0]]).reshape(shape)
            seen.append({"path": urlsplit(self.path).path, "query": query, "headers": dict(self.headers),
                         "latent": latent})
            status, headers, data = answer(latent, query)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/decode", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def remote(decoders: dict[str, str]) -> contextlib.AbstractContextManager[NodeContext]:
    return use(NodeContext(remote_vae_decoders=decoders))


def flux_latent(seed: int = 1, batch: int = 1) -> dict[str, torch.Tensor]:
    return {"samples": torch.randn(batch, 16, 6, 8, generator=torch.Generator().manual_seed(seed))}


def local_decode(raw: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ((dit_files.modules().vae.decode(raw).sample + 1) / 2).clamp(0, 1).movedim(1, -1)


def test_flux_decodes_remotely_as_the_local_vae_would_with_the_protocols_parameters():
    latent = flux_latent(batch=2)
    with endpoint() as (url, seen), remote({"Flux": url}):
        (image,) = RemoteVAEDecode().decode(latent, "Flux")
    (request,) = seen
    query = request["query"]
    assert request["path"] == "/decode" and request["headers"]["Content-Type"] == "tensor/binary"
    assert query["shape"] == ["2", "16", "6", "8"] and query["dtype"] == ["bfloat16"]
    assert query["scaling_factor"] == ["0.3611"] and query["shift_factor"] == ["0.1159"]
    assert query["output_type"] == ["pt"] and query["partial_postprocess"] == ["False"]
    assert "height" not in query and "width" not in query  # unpacked [B, 16, h, w] latents need no size
    scaled = ((latent["samples"] - 0.1159) * 0.3611).to(torch.bfloat16)
    torch.testing.assert_close(request["latent"], scaled, rtol=0, atol=0)
    assert image.shape == (2, 48, 64, 3) and image.dtype == torch.float32
    # exactly the local decode of what went over the wire, and the local decode of the latent up to bf16 rounding
    torch.testing.assert_close(image, local_decode(scaled.float() / 0.3611 + 0.1159), rtol=1e-5, atol=1e-5)
    exact = local_decode(latent["samples"])
    torch.testing.assert_close(image, exact, rtol=0, atol=2e-2)
    assert (image - exact).abs().max() > 0  # the bf16 wire is not lossless: the check above is real


def test_the_node_decodes_like_the_installed_vae_when_a_type_has_no_endpoint(tmp_path):
    dit_files.write_vae(tmp_path)
    latent = flux_latent(seed=3)
    with endpoint() as (url, seen), node_instances(tmp_path) as nodes:
        (local,) = nodes["RemoteVAEDecode"].decode(latent, "Flux")  # no endpoint configured: local file
        with use(NodeContext(remote_vae_decoders={"SDXL": url}, model_folders=None)), \
                pytest.raises(InvalidInput, match="no Flux VAE is installed"):
            RemoteVAEDecode().decode(latent, "Flux")  # an endpoint for another type does not serve Flux
        with remote({"Flux": url}):
            (far,) = RemoteVAEDecode().decode(latent, "Flux")
    assert len(seen) == 1
    torch.testing.assert_close(far, local, rtol=0, atol=2e-2)


def ramp(shape: list[int]) -> torch.Tensor:
    """Pixels ``[B, 3, (F,) H, W]`` running over -1.5..1.5 (some outside -1..1, to be clamped)."""
    count = 1
    for size in shape:
        count *= size
    return torch.linspace(-1.5, 1.5, count).reshape(shape)


def ramp_answer(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
    """A stand-in decode in float16: 3 channels at 8x the size, a video's frames kept."""
    pixels = ramp([latent.shape[0], 3, *latent.shape[2:-2], 8 * latent.shape[-2], 8 * latent.shape[-1]])
    return 200, {"shape": json.dumps(list(pixels.shape)), "dtype": "float16"}, tensor_bytes(pixels.half())


def test_sd_types_send_their_scaling_factor_and_no_shift_and_videos_come_back_as_frames():
    sd = {"samples": torch.randn(2, 4, 4, 5, generator=torch.Generator().manual_seed(4))}
    video = {"samples": torch.randn(1, 16, 2, 3, 4, generator=torch.Generator().manual_seed(5))}
    with endpoint(ramp_answer) as (url, seen), remote({"SD v1": url, "SDXL": url, "HunyuanVideo": url}):
        images = [RemoteVAEDecode().decode(sd, vae_type)[0] for vae_type in ("SD v1", "SDXL")]
        (frames,) = RemoteVAEDecode().decode(video, "HunyuanVideo")
    assert [r["query"]["scaling_factor"] for r in seen] == [["0.18215"], ["0.13025"], ["0.476986"]]
    assert all("shift_factor" not in r["query"] and r["query"]["dtype"] == ["float16"] for r in seen)
    assert seen[2]["query"]["shape"] == ["1", "16", "2", "3", "4"]
    torch.testing.assert_close(seen[0]["latent"], (sd["samples"] * 0.18215).half(), rtol=0, atol=0)
    torch.testing.assert_close(seen[2]["latent"], (video["samples"] * 0.476986).half(), rtol=0, atol=0)
    expected = ((ramp([2, 3, 32, 40]).half().float() + 1) / 2).clamp(0, 1).movedim(1, -1)
    for image in images:
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
    sent = ((ramp([1, 3, 2, 24, 32]).half().float() + 1) / 2).clamp(0, 1)
    assert frames.shape == (2, 24, 32, 3)  # the frames of the video in the batch, in order
    torch.testing.assert_close(frames, sent[0].permute(1, 2, 3, 0), rtol=0, atol=0)


def test_an_answer_of_the_wrong_shape_is_an_error():
    def flat(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"shape": "[1, 4, 8]", "dtype": "float32"}, tensor_bytes(torch.zeros(1, 4, 8))

    with endpoint(flat) as (url, _), remote({"Flux": url}), pytest.raises(ModelError, match="expected images"):
        RemoteVAEDecode().decode(flux_latent(), "Flux")


def test_an_endpoint_error_names_the_endpoint_and_the_status():
    def failing(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        return 500, {"Content-Type": "application/json"}, b'{"error": "CUDA out of memory"}'

    with endpoint(failing) as (url, _), remote({"Flux": url}), \
            pytest.raises(ModelError, match=rf"remote VAE decoder {url} answered HTTP 500 .*CUDA out of memory"):
        RemoteVAEDecode().decode(flux_latent(), "Flux")


def test_an_answer_that_is_not_a_tensor_is_an_error():
    def html(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"

    with endpoint(html) as (url, _), remote({"Flux": url}), \
            pytest.raises(ModelError, match=rf"remote VAE decoder {url} did not answer with a tensor"):
        RemoteVAEDecode().decode(flux_latent(), "Flux")


def test_an_unreachable_endpoint_is_an_error_naming_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/decode"
    with remote({"Flux": url}), pytest.raises(ModelError, match=rf"remote VAE decoder {url} could not be reached"):
        RemoteVAEDecode().decode(flux_latent(), "Flux")


def test_an_endpoint_slower_than_the_timeout_is_an_error(monkeypatch):
    release = threading.Event()

    def stalled(latent: torch.Tensor, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        release.wait(5)
        return vae_answer(latent, query)

    monkeypatch.setattr(remote_vae, "TIMEOUT_S", 0.2)
    with endpoint(stalled) as (url, _), remote({"Flux": url}):
        try:
            with pytest.raises(ModelError, match=rf"remote VAE decoder {url} did not answer within 0.2 s"):
                RemoteVAEDecode().decode(flux_latent(), "Flux")
        finally:
            release.set()  # before the server closes, which waits for its handler threads


def test_a_latent_of_another_family_is_refused_before_anything_is_sent():
    with endpoint() as (url, seen), remote({"Flux": url, "HunyuanVideo": url}):
        with pytest.raises(InvalidInput, match=r"a Flux latent is \[batch, 16, height, width\], got \[1, 4, 8, 8\]"):
            RemoteVAEDecode().decode({"samples": torch.zeros(1, 4, 8, 8)}, "Flux")
        with pytest.raises(InvalidInput, match="frames"):
            RemoteVAEDecode().decode(flux_latent(), "HunyuanVideo")
    assert seen == []


async def test_the_executor_hands_the_settings_endpoints_to_the_node(tmp_path):
    from visionatrix.executor.run import Executor, ExecutorSettings
    from visionatrix.nodes.registry import NodeRegistry

    latent = flux_latent(seed=7)

    class FixedLatent:
        RETURN_TYPES = ("LATENT",)
        FUNCTION = "make"
        CATEGORY = "test"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def make(self):
            return (latent,)

    captured: list[torch.Tensor] = []

    class CaptureImage:
        OUTPUT_NODE = True
        RETURN_TYPES = ()
        FUNCTION = "capture"
        CATEGORY = "test"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",)}}

        def capture(self, images):
            captured.append(images)
            return {}

    registry = NodeRegistry()
    registry.register_mappings({"RemoteVAEDecode": RemoteVAEDecode, "FixedLatent": FixedLatent,
                                "CaptureImage": CaptureImage}, None, python_module="tests", pack="tests")
    graph = {"1": {"class_type": "FixedLatent", "inputs": {}},
             "2": {"class_type": "RemoteVAEDecode", "inputs": {"samples": ["1", 0], "vae_type": "Flux"}},
             "3": {"class_type": "CaptureImage", "inputs": {"images": ["2", 0]}}}
    with endpoint() as (url, seen):
        settings = load_settings({"VIX_REMOTE_VAE_DECODERS": f"flux={url}"})
        executor = Executor(registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "tmp",
                                                       remote_vae_decoders=settings.remote_vae_decoders))
        try:
            await executor.execute(graph)
        finally:
            executor.close()
    assert len(seen) == 1 and len(captured) == 1
    torch.testing.assert_close(captured[0], local_decode(latent["samples"]), rtol=0, atol=2e-2)


# -- the setting ------------------------------------------------------------------------------------------------------

def test_the_setting_takes_type_url_pairs_or_a_json_object_and_names_types_as_the_node_does():
    assert tuple(VAE_FILES) == REMOTE_VAE_TYPES
    pairs = load_settings({"VIX_REMOTE_VAE_DECODERS": "sd_v1=http://a:1/x?k=v, FLUX=https://b.example/"})
    assert pairs.remote_vae_decoders == {"SD v1": "http://a:1/x?k=v", "Flux": "https://b.example/"}
    as_json = load_settings({"VIX_REMOTE_VAE_DECODERS": '{"SDXL": "http://x", "HunyuanVideo": "https://y/z"}'})
    assert as_json.remote_vae_decoders == {"SDXL": "http://x", "HunyuanVideo": "https://y/z"}
    flag = load_settings({"VIX_REMOTE_VAE_DECODERS": "Flux=http://env"}, remote_vae_decoders="Flux=http://flag")
    assert flag.remote_vae_decoders == {"Flux": "http://flag"}
    assert load_settings({}).remote_vae_decoders == {}


@pytest.mark.parametrize(("value", "message"), [
    ("Flux=ftp://host/x", "the endpoint of Flux must be an http"),
    ("Flux=http://", "the endpoint of Flux must be an http"),
    ("Flux=/decode", "the endpoint of Flux must be an http"),
    ("SD3=http://x", "unknown VAE type 'SD3'"),
    ("Flux", "must be 'type=url' pairs"),
    ("{not json", "not a valid JSON object"),
    ('["Flux"]', "must be 'type=url' pairs"),
    ('{"Flux": 3}', "the endpoint of Flux must be an http"),
    ("flux=http://a,Flux=http://b", "names Flux twice"),
])
def test_bad_setting_values_are_refused_naming_the_variable(value, message):
    with pytest.raises(InvalidSetting, match=f"VIX_REMOTE_VAE_DECODERS.*{message}"):
        load_settings({"VIX_REMOTE_VAE_DECODERS": value})


def test_the_cli_flag_reaches_the_settings_and_a_bad_one_exits_2(capsys):
    from visionatrix.cli.main import _FLAGS, build_parser, main

    for command in (["run"], ["run-flow", "f.json"]):
        args = build_parser().parse_args([*command, "--remote-vae-decoders", "Flux=http://h:9/d"])
        settings = load_settings({}, **{name: getattr(args, name, None) for name in _FLAGS})
        assert settings.remote_vae_decoders == {"Flux": "http://h:9/d"}
    assert main(["run", "--remote-vae-decoders", "Flux=file:///etc/passwd"]) == 2
    assert "VIX_REMOTE_VAE_DECODERS" in capsys.readouterr().err
