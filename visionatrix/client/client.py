"""``VixClient``: every route of the ``/vapi`` REST API as an async method, plus streamed downloads and waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from visionatrix.client.errors import VixClientError

FINAL_STATUSES = frozenset({"finished", "failed", "cancelled"})
FINAL_EVENTS = frozenset({"task_finished", "task_failed", "task_cancelled", "task_deleted"})
DOWNLOAD_CHUNK_BYTES = 256 * 1024
MODEL_END_STATES = frozenset({"installed", "failed", "cancelled"})

FileSource = str | os.PathLike[str] | bytes


class VixClient:
    """An async client of one Visionatrix server; use it as ``async with VixClient(url) as vix: ...``.

    ``session`` lets the caller share an ``aiohttp.ClientSession`` (the client then does not close it);
    ``timeout_s`` bounds each request (streams and ``wait_for_task`` have their own limits).
    """

    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None,
                 timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> VixClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()  # made here, inside the running loop
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path_or_url: str) -> str:
        """An absolute URL for a path the server gave (``/vapi/...``) or an absolute URL as is."""
        if urlsplit(path_or_url).scheme:
            return path_or_url
        return self.base_url + "/" + path_or_url.lstrip("/")

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.url(path), timeout=self.timeout, **kwargs) as response:
            if response.status >= 400:
                raise await _error_of(response)
            if response.status == 204:
                return None
            return await response.json()

    # -- health and flows ------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/vapi/health")

    async def list_flows(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/vapi/flows"))["flows"]

    async def get_flow(self, name: str) -> dict[str, Any]:
        return await self._request("GET", f"/vapi/flows/{_segment(name)}")

    async def upload_flow(self, data_or_path: Mapping[str, Any] | FileSource, *,
                          name: str | None = None) -> dict[str, Any]:
        """Upload a flow given as parsed JSON, as a file path, or as the file's bytes; returns its summary."""
        params = {"name": name} if name else None
        if isinstance(data_or_path, Mapping):
            return await self._request("POST", "/vapi/flows", json=dict(data_or_path), params=params)
        with contextlib.ExitStack() as stack:
            form = aiohttp.FormData()
            _add_file(form, "file", data_or_path, stack)
            return await self._request("POST", "/vapi/flows", data=form, params=params)

    async def delete_flow(self, name: str) -> None:
        """Delete an uploaded flow, or uninstall a bundled one (``install_bundled_flow`` brings it back)."""
        await self._request("DELETE", f"/vapi/flows/{_segment(name)}")

    async def get_flow_graph(self, name: str) -> dict[str, Any]:
        """The flow's ComfyUI API-format graph, with its default values."""
        return await self._request("GET", f"/vapi/flows/{_segment(name)}/graph")

    async def list_bundled_flows(self) -> list[dict[str, Any]]:
        """Every flow shipped with the server, each with ``installed``."""
        return (await self._request("GET", "/vapi/flows/bundled"))["flows"]

    async def install_bundled_flow(self, name: str) -> dict[str, Any]:
        return await self._request("POST", f"/vapi/flows/bundled/{_segment(name)}")

    # -- tasks -----------------------------------------------------------------------------------------------------

    async def create_task(self, flow: str, params: Mapping[str, Any] | None = None,
                          files: Mapping[str, FileSource] | None = None, *, count: int = 1,
                          priority: int = 0, webhook_url: str | None = None,
                          webhook_headers: Mapping[str, str] | None = None) -> list[int]:
        """Queue ``count`` tasks of ``flow``; ``files`` maps an image parameter to a file path or its bytes;
        ``webhook_url`` (with ``webhook_headers``) is POSTed a signed JSON body when each task ends."""
        webhook: dict[str, Any] = {}
        if webhook_url is not None:
            webhook["webhook_url"] = webhook_url
        if webhook_headers is not None:
            webhook["webhook_headers"] = dict(webhook_headers)
        if not files:
            body = {"flow": flow, "params": dict(params or {}), "count": count, "priority": priority, **webhook}
            return (await self._request("POST", "/vapi/tasks", json=body))["task_ids"]
        with contextlib.ExitStack() as stack:
            form = aiohttp.FormData()
            form.add_field("flow", flow)
            form.add_field("count", str(count))
            form.add_field("priority", str(priority))
            for name, value in webhook.items():
                form.add_field(name, value if isinstance(value, str) else json.dumps(value))
            form.add_field("params", json.dumps(dict(params or {})), content_type="application/json")
            for name, source in files.items():
                _add_file(form, name, source, stack)
            return (await self._request("POST", "/vapi/tasks", data=form))["task_ids"]

    async def list_tasks(self, *, status: str | None = None, flow: str | None = None, limit: int = 50,
                         offset: int = 0) -> list[dict[str, Any]]:
        query: dict[str, str] = {"limit": str(limit), "offset": str(offset)}
        if status:
            query["status"] = status
        if flow:
            query["flow"] = flow
        return (await self._request("GET", "/vapi/tasks", params=query))["tasks"]

    async def get_task(self, task_id: int) -> dict[str, Any]:
        return await self._request("GET", f"/vapi/tasks/{int(task_id)}")

    async def cancel_task(self, task_id: int) -> dict[str, Any]:
        return await self._request("POST", f"/vapi/tasks/{int(task_id)}/cancel")

    async def restart_task(self, task_id: int) -> dict[str, Any]:
        return await self._request("POST", f"/vapi/tasks/{int(task_id)}/restart")

    async def delete_task(self, task_id: int) -> None:
        await self._request("DELETE", f"/vapi/tasks/{int(task_id)}")

    async def list_workers(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/vapi/workers"))["workers"]

    async def set_worker_flows(self, worker_id: str, flows: Sequence[str] | None) -> dict[str, Any]:
        """Restrict a worker to ``flows`` (None lifts the restriction); the worker as ``list_workers`` shows it."""
        body = {"flows": None if flows is None else list(flows)}
        return await self._request("PUT", f"/vapi/workers/{_segment(worker_id)}/allowed_flows", json=body)

    # -- models ----------------------------------------------------------------------------------------------------

    async def list_models(self, *, flow: str | None = None) -> list[dict[str, Any]]:
        """The catalog's models with their state on the server (``flow``: only the ones that flow needs)."""
        params = {"flow": flow} if flow is not None else None
        return (await self._request("GET", "/vapi/models", params=params))["models"]

    async def install_models(self, names: Sequence[str] | None = None, *, flow: str | None = None
                             ) -> dict[str, Any]:
        """Start downloading ``names`` (or every catalog model of ``flow``) on the server: ``{"started",
        "installed"}``; progress comes as ``model_progress`` events (``events()``, ``wait_for_models``)."""
        return await self._request("POST", "/vapi/models/install", json=_install_body(names, flow))

    async def cancel_model_install(self, name: str) -> bool:
        return bool((await self._request("POST", f"/vapi/models/{_segment(name)}/cancel"))["cancelled"])

    async def remove_model(self, name: str) -> None:
        await self._request("DELETE", f"/vapi/models/{_segment(name)}")

    async def install_models_on_worker(self, worker_id: str, names: Sequence[str] | None = None, *,
                                       flow: str | None = None) -> dict[str, Any]:
        """Ask one worker to download models into its own folder (it takes the command with its next report)."""
        return await self._request("POST", f"/vapi/workers/{_segment(worker_id)}/install",
                                   json=_install_body(names, flow))

    async def free_worker(self, worker_id: str) -> dict[str, Any]:
        """Ask one worker to unload every model it holds."""
        return await self._request("POST", f"/vapi/workers/{_segment(worker_id)}/free")

    async def wait_for_models(self, names: Sequence[str], timeout_s: float = 3600.0) -> dict[str, dict[str, Any]]:
        """Wait until each of the server's downloads of ``names`` ended (installed, failed or cancelled); the last
        ``model_progress`` of each. Models already installed count as ended."""
        waiting = set(names)
        ended: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(timeout_s), self._socket(None) as (socket, _subscribed):
            for model in await self.list_models():
                progress = model.get("progress") or {}
                if model["name"] in waiting and ((model["state"] == "installed" and not progress)
                                                 or progress.get("state") in MODEL_END_STATES):
                    ended[model["name"]] = progress or {"name": model["name"], "state": "installed"}
            while waiting - set(ended):
                event = await socket.receive_json()
                if (event.get("type") == "model_progress" and event.get("worker_id") is None
                        and event.get("name") in waiting and event.get("state") in MODEL_END_STATES):
                    ended[event["name"]] = event
        return ended

    # -- files -----------------------------------------------------------------------------------------------------

    async def download(self, url_or_file: str | Mapping[str, Any], dest: str | os.PathLike[str]) -> Path:
        """Stream a task file (its ``url``, or the file object of a task) to ``dest`` (a file, or a folder to put
        it in under its own name); returns the written path. The file appears only once it is complete."""
        url = url_or_file["url"] if isinstance(url_or_file, Mapping) else url_or_file
        target = Path(dest)
        if target.is_dir() or str(dest).endswith(("/", os.sep)):
            target.mkdir(parents=True, exist_ok=True)
            target = target / Path(unquote(urlsplit(url).path)).name
        partial = target.with_name(target.name + ".part")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout.total, sock_read=self.timeout.total)
        async with self.session.get(self.url(url), timeout=timeout) as response:
            if response.status >= 400:
                raise await _error_of(response)
            try:
                with partial.open("wb") as handle:
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                        handle.write(chunk)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
        return target

    # -- events and waiting ----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _socket(self, task_id: int | None) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse,
                                                                         dict[str, Any]]]:
        """The events WebSocket and the server's ``subscribed`` message, once the server confirmed it."""
        params = {"task_id": str(int(task_id))} if task_id is not None else None
        async with self.session.ws_connect(self.url("/vapi/events"), params=params, heartbeat=30.0,
                                           timeout=aiohttp.ClientWSTimeout(ws_close=10.0)) as ws:
            first = await ws.receive(timeout=self.timeout.total)
            subscribed = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
            if not isinstance(subscribed, dict) or subscribed.get("type") != "subscribed":
                raise aiohttp.ClientConnectionError("the events socket did not confirm the subscription")
            yield ws, subscribed

    async def events(self, task_id: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Task events as they happen (all tasks, or one), until the server closes the stream.

        The first is ``{"type": "subscribed", "task_id": ...}``: every event after that moment follows.
        """
        try:
            async with self._socket(task_id) as (ws, subscribed):
                yield subscribed
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        yield json.loads(message.data)
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        raise aiohttp.ClientConnectionError(f"events socket failed: {ws.exception()}")
        except aiohttp.WSServerHandshakeError as exc:
            raise VixClientError(exc.status, "handshake_failed", exc.message or "cannot open the events socket") \
                from exc

    async def wait_for_task(self, task_id: int, timeout_s: float = 600.0, *, poll_s: float = 1.0) -> dict[str, Any]:
        """The task once it is finished, failed or cancelled; ``TimeoutError`` after ``timeout_s``.

        Listens on the events WebSocket; when that cannot be used it polls every ``poll_s`` seconds.
        """
        async with asyncio.timeout(timeout_s):
            try:
                return await self._wait_with_events(task_id)
            except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError, _SocketEnded):
                pass
            while True:
                task = await self.get_task(task_id)
                if task["status"] in FINAL_STATUSES:
                    return task
                await asyncio.sleep(poll_s)

    async def _wait_with_events(self, task_id: int) -> dict[str, Any]:
        async with self._socket(task_id) as (ws, _):
            task = await self.get_task(task_id)
            if task["status"] in FINAL_STATUSES:
                return task
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                if event.get("task_id") == task_id and event.get("type") in FINAL_EVENTS:
                    task = await self.get_task(task_id)
                    if task["status"] in FINAL_STATUSES:
                        return task
        raise _SocketEnded


class _SocketEnded(Exception):
    """The events socket closed before the task ended."""


async def _error_of(response: aiohttp.ClientResponse) -> VixClientError:
    text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return VixClientError(response.status, str(body["error"]), str(body.get("message", "")), body.get("details"))
    return VixClientError(response.status, f"http_{response.status}", text.strip() or (response.reason or ""))


def _segment(value: str) -> str:
    return quote(value, safe="")


def _add_file(form: aiohttp.FormData, field: str, source: FileSource, stack: contextlib.ExitStack) -> None:
    if isinstance(source, bytes):
        form.add_field(field, source, filename=field, content_type="application/octet-stream")
        return
    path = Path(source)
    handle = stack.enter_context(path.open("rb"))
    form.add_field(field, handle, filename=path.name, content_type="application/octet-stream")


def _install_body(names: Sequence[str] | None, flow: str | None) -> dict[str, Any]:
    if (names is None) == (flow is None):
        raise ValueError("give either names or flow")
    return {"names": list(names)} if names is not None else {"flow": flow}
