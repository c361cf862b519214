"""The JSON answers of the API as pydantic models, from which the OpenAPI document's schemas of them are generated
(the component names are the class names).

The views (``views``) still build the answers as dicts, the cheap way; the tests validate real views against these
models (unknown keys refused), so the document cannot drift from what the routes send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ResponseBody(BaseModel):
    """An answer's shape: every key the view sends, and no other."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TaskFile(ResponseBody):
    """One of a task's files: an input it was given, an output it made, or a temporary output (a preview)."""

    name: str
    kind: Literal["input", "output", "temp"]
    param: str | None = Field(description="The flow parameter an input was given for")
    node_id: str | None = Field(description="The node that wrote an output")
    size_bytes: int
    sha256: str
    url: str = Field(description="Path that downloads the file")


class TaskError(ResponseBody):
    """Why a task failed, and at which node."""

    node_id: str | None
    class_type: str | None
    message: str


class Task(ResponseBody):
    """A task as the API shows it (``GET /vapi/tasks`` and ``/vapi/tasks/{task_id}``, cancel and restart)."""

    id: int
    flow: str
    status: Literal["pending", "claimed", "running", "finished", "failed", "cancelled"] = Field(
        description="claimed: a worker holds it but has not started executing it yet (it waits for the worker's "
                    "current task); running: executing since started_at")  # TaskStatus (a test keeps them equal)
    priority: int
    params: dict[str, Any]
    progress: float = Field(ge=0, le=100)
    current_node: str | None
    worker_id: str | None
    attempt: int
    cancel_requested: bool
    error: TaskError | None
    timings: dict[str, float] = Field(description="node id -> seconds")
    peak_vram_bytes: int | None = Field(
        ge=0, description="The most bytes torch held allocated on the worker's GPU during the run; null on a CPU "
                          "worker, before the run ends, or when not measured")
    webhook_url: str | None = Field(description="Where the task's end is POSTed (its webhook_headers are never "
                                                "shown)")
    created_at: datetime | None
    started_at: datetime | None = Field(description="When its execution started (null while pending or claimed)")
    finished_at: datetime | None
    updated_at: datetime | None
    inputs: list[TaskFile]
    outputs: list[TaskFile]
    previews: list[TaskFile] = Field(description="Temporary outputs (PreviewImage's images): removed with the task "
                                                 "or VIX_TEMP_MAX_AGE_H after it ended")


RESPONSES: tuple[type[BaseModel], ...] = (Task,)
"""The answers whose schemas are generated (with the models they use)."""
