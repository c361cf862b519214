"""Node previews: what a node passes becomes a small JPEG; the tracker keeps only the newest one."""

from __future__ import annotations

import io

from PIL import Image

from visionatrix.executor import events
from visionatrix.worker.previews import encode_preview
from visionatrix.worker.progress import ProgressTracker


def test_comfyuis_preview_tuple_and_a_bare_image_become_small_jpegs() -> None:
    big = Image.new("RGB", (1024, 512), (10, 200, 30))
    for preview, side in ((("JPEG", big, 256), 256), (("PNG", big, None), 512), (big, 512)):
        data = encode_preview(preview)
        assert data is not None and data.startswith(b"\xff\xd8\xff")
        with Image.open(io.BytesIO(data)) as image:
            assert max(image.size) == side
    assert encode_preview(("JPEG", "not an image", 64)) is None
    assert encode_preview(None) is None


def test_the_tracker_keeps_the_newest_preview_until_it_is_taken() -> None:
    tracker = ProgressTracker()
    tracker(events.NodeProgressed("p", "3", 1, 4, "first"))
    tracker(events.NodeProgressed("p", "3", 2, 4, "second"))
    tracker(events.NodeProgressed("p", "3", 3, 4))
    assert tracker.take_preview() == ("3", "second")
    assert tracker.take_preview() is None
