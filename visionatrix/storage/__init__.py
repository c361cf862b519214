"""Task files on disk: the ``input/`` and ``output/`` folders of each task, staging for uploads, path confinement,
streaming saves and image checks. Imports no torch, and nothing above it (``server/``, ``worker/``, ``queue/``)."""

from visionatrix.storage.files import TaskStorage
from visionatrix.storage.images import check_image
from visionatrix.storage.info import FileInfo
from visionatrix.storage.names import safe_name

__all__ = ["FileInfo", "TaskStorage", "check_image", "safe_name"]
