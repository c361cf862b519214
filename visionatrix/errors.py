"""The one exception tree of Visionatrix.

Every error the project raises on purpose derives from :class:`VisionatrixError`; subclasses carry the data a
caller needs to report the problem (which node, which input, every validation issue) instead of a formatted string.
"""

from __future__ import annotations

from typing import Any


class VisionatrixError(Exception):
    """Visionatrix failed to do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFound(VisionatrixError):
    """The requested object does not exist."""

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident!r} not found")


class InvalidInput(VisionatrixError):
    """A value given to a node or a flow is not acceptable.

    Nodes raise it to name the input at fault (``input_name``); the executor adds the node id and class.
    """

    def __init__(self, input_name: str, message: str) -> None:
        self.input_name = input_name
        super().__init__(f"{input_name}: {message}")


class InvalidFlow(VisionatrixError):
    """A flow or workflow file cannot be read as a flow."""


class InvalidParams(VisionatrixError):
    """Parameters given for a flow run do not match its manifest.

    ``problems`` maps a parameter name to what is wrong with it.
    """

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(f"invalid parameters: {lines}")


class InvalidGraph(VisionatrixError):
    """The graph failed validation; ``error`` and ``node_errors`` follow ComfyUI's response shape."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        self.error = error
        self.node_errors = node_errors
        super().__init__(error.get("message", "invalid graph"))

    def issue_lines(self) -> list[str]:
        """Every problem as one readable line (``node 3 (ImageScale) input 'width': ...``)."""
        lines: list[str] = []
        if not self.node_errors:
            details = self.error.get("details") or ""
            lines.append(f"{self.error.get('message', 'invalid graph')}" + (f": {details}" if details else ""))
        for node_id, entry in self.node_errors.items():
            for err in entry.get("errors", []):
                where = f"node {node_id} ({entry.get('class_type', '?')})"
                input_name = err.get("extra_info", {}).get("input_name")
                if input_name:
                    where += f" input {input_name!r}"
                lines.append(f"{where}: {err.get('message', '')}: {err.get('details', '')}".rstrip(": "))
        return lines


class NodeFailed(VisionatrixError):
    """A node raised while executing."""

    def __init__(self, node_id: str, class_type: str, cause: BaseException) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.cause = cause
        self.input_name = getattr(cause, "input_name", None)
        where = f"node {node_id} ({class_type})"
        if self.input_name:
            where += f" input {self.input_name!r}"
        super().__init__(f"{where} failed: {type(cause).__name__}: {cause}")


class Interrupted(VisionatrixError):
    """Execution was interrupted on request."""


class Conflict(VisionatrixError):
    """The action is not allowed in the object's current state."""


class LeaseLost(VisionatrixError):
    """The worker's lease on a task is gone: it expired and the task was requeued, or another run owns it."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id}: the lease was lost (expired, requeued or owned by another run)")


class TooLarge(VisionatrixError):
    """An upload or file is over its size limit."""

    def __init__(self, what: str, limit_bytes: int) -> None:
        self.what = what
        self.limit_bytes = limit_bytes
        super().__init__(f"{what} is over the limit of {limit_bytes} bytes")


class ModelError(VisionatrixError):
    """A model could not be found, read, installed or removed."""


class ModelFileError(ModelError):
    """A file is not a usable model for what asked for it: not a model, truncated, a pickle that needs code, or a
    model of the wrong kind for its loader."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"model file {self.path}: {reason}")


class DownloadError(ModelError):
    """A model download failed."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"download of {name}: {reason}")


class DownloadRefused(DownloadError):
    """A download address is not allowed (scheme, host or a private network address)."""


class DownloadAuthRequired(DownloadError):
    """The server asked for credentials: the named token is missing or not accepted."""

    def __init__(self, name: str, token_env: str, status: int, *, token_sent: bool = False) -> None:
        self.token_env = token_env
        self.status = status
        self.token_sent = token_sent
        why = (f"the token in {token_env} was refused; set it to a token with access to it" if token_sent
               else f"the model is gated; set {token_env} to a token with access to it")
        super().__init__(name, f"HTTP {status}: {why}")
