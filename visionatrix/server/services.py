"""What the server works with, built and owned by the composition root (``visionatrix.cli.serve``, test fixtures).

The application only uses these objects; it never creates an engine, migrates or closes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from visionatrix.flows.catalog import FlowCatalog
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.prompts import PromptTasks
from visionatrix.security_config import SecuritySettings
from visionatrix.storage.files import TaskStorage

if TYPE_CHECKING:
    from visionatrix.server.server_models import ServerModels


@dataclass
class Services:
    queue: TaskQueue
    storage: TaskStorage
    flows: FlowCatalog
    registry: NodeRegistry
    events: TaskEvents
    max_image_pixels: int
    version: str
    web_dir: Path | None = None
    """Folder whose ``index.html`` is served at ``/``; None serves no page."""
    worker_auth: str | None = None
    """``WORKER_AUTH``: ``user:password`` or a token the worker routes (``/vapi/worker/...``) require; None: open."""
    models_dir: Path | None = None
    """``VIX_MODELS_DIR``: model files, one subfolder per kind (``checkpoints``, ``loras``, ...); None: none."""
    prompts: PromptTasks | None = None
    """ComfyUI prompts as tasks; None: ``create_app`` makes one on ``queue``."""
    models: ServerModels | None = None
    """The server's catalog, models folder and downloads (``/vapi/models``); None: the model routes answer 404."""
    user_dir: Path | None = None
    """``VIX_USER_DIR``: the graph editor's per-user settings and saved workflows; None: the editor's user routes
    answer 404."""
    model_folders: ModelFolders | None = None
    """The model folders (``models_dir`` plus ``VIX_EXTRA_MODEL_PATHS``); None: built from ``models_dir`` alone
    when there is one."""
    security: SecuritySettings = field(default_factory=SecuritySettings)
    """Sign-in, allowed hosts, request limits, webhooks (``VIX_AUTH``, ``VIX_ALLOWED_HOSTS``, ...)."""
    bind_host: str = "127.0.0.1"
    """The address the server listens on (``VIX_HOST``): a loopback bind needs no sign-in unless ``VIX_AUTH=on``."""

    def __post_init__(self) -> None:
        if self.model_folders is None and self.models_dir is not None:
            self.model_folders = ModelFolders(self.models_dir)


SERVICES = web.AppKey("services", Services)
