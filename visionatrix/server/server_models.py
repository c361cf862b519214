"""The server's own model store: the catalog, what its models folder holds, and its downloads (``/vapi/models``).

Built by the composition root (``cli/serve.py``) and handed to the app in ``Services.models``. In the DEFAULT mode
the in-process worker shares it (same folder, same downloads). Flows name their models through the catalog:
``needed_by`` maps each catalog model to the installed flows that need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from visionatrix.errors import InvalidParams, NotFound
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.installer import ModelInstaller
from visionatrix.models.inventory import ModelInventory
from visionatrix.server.model_request import InstallRequest


@dataclass
class ServerModels:
    catalog: ModelsCatalog
    inventory: ModelInventory
    installer: ModelInstaller

    def needed_by(self, flow_infos: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Catalog model name → the flows (of ``flow_infos``) that need it, in the given order."""
        needed: dict[str, list[str]] = {}
        for info in flow_infos:
            for model in self.catalog.for_flow(info):
                flows = needed.setdefault(model.name, [])
                if info["name"] not in flows:
                    flows.append(str(info["name"]))
        return needed

    def resolve(self, request: InstallRequest, flows: FlowCatalog) -> list[str]:
        """The catalog models an install request names: its ``names`` (``NotFound`` for the first unknown one), or
        every catalog model of its ``flow`` (``InvalidParams`` when the flow needs models the catalog lacks)."""
        if request.names is not None:
            for name in request.names:
                self.catalog.get(name)
            return list(dict.fromkeys(request.names))
        assert request.flow is not None
        info = flows.get(request.flow).info()
        unknown = [str(ref.get("value") or ref.get("name")) for ref in info["models"] if not ref.get("in_catalog")]
        if unknown:
            raise InvalidParams({"flow": f"flow {request.flow!r} needs models the catalog does not name, which "
                                         f"cannot be downloaded: {', '.join(unknown)}"})
        return [model.name for model in self.catalog.for_flow(info)]

    def view(self, name: str, needed_by: Mapping[str, list[str]]) -> dict[str, Any]:
        """One model as ``GET /vapi/models`` shows it: its state in the server's folder, the flows that need it and
        its download's progress (None when none is known)."""
        view = dict(self.inventory.status(name).as_dict())
        view.pop("path", None)
        progress = self.installer.progress().get(name)
        view["flows"] = list(needed_by.get(name, []))
        view["progress"] = progress.event() if progress is not None else None
        return view

    def get(self, name: str) -> None:
        """``NotFound`` unless the catalog names ``name``."""
        if not isinstance(name, str) or not name:
            raise NotFound("model", str(name))
        self.catalog.get(name)
