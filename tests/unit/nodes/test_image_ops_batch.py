"""EmptyImage, ImageBatch and ImageContactSheet: colours, sizes, layout and progress."""

import numpy as np
import pytest
import torch

from comfy_nodes.image_ops import batch, resize
from visionatrix.errors import Interrupted, InvalidInput
from visionatrix.nodes import context


def random_image(height=16, width=24, channels=3, count=1, seed=20):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((count, height, width, channels), dtype=np.float32))


def test_empty_image_fills_the_batch_with_the_rrggbb_colour():
    (out,) = batch.EmptyImage().generate(24, 16, 2, 0x336699)
    assert out.shape == (2, 16, 24, 3) and out.dtype == torch.float32
    assert out.device.type == "cpu"
    expected = torch.tensor([0x33, 0x66, 0x99], dtype=torch.float32) / 255
    assert torch.equal(out, expected.expand(2, 16, 24, 3))


def test_empty_image_is_created_on_the_context_device():
    with context.use(context.NodeContext(device="meta")):
        (out,) = batch.EmptyImage().generate(8, 8, 1, 0xFFFFFF)
    assert out.device.type == "meta"


def test_empty_image_refuses_a_size_above_the_pixel_limit():
    with context.use(context.NodeContext(max_image_pixels=100)), pytest.raises(InvalidInput) as error:
        batch.EmptyImage().generate(24, 16, 1, 0)
    assert error.value.input_name == "width"


def test_image_batch_joins_two_batches_of_the_same_size():
    image1, image2 = random_image(count=2), random_image(count=3, seed=21)
    (out,) = batch.ImageBatch().batch(image1, image2)
    assert torch.equal(out, torch.cat([image1, image2]))


def test_image_batch_resizes_image2_to_image1_with_a_center_crop():
    image1, image2 = random_image(), random_image(20, 20, seed=22)
    (out,) = batch.ImageBatch().batch(image1, image2)
    (expected,) = resize.ImageScale().upscale(image2, "bilinear", 24, 16, "center")
    assert out.shape == (2, 16, 24, 3)
    torch.testing.assert_close(out[1:], expected)


def test_image_batch_keeps_alpha_when_one_side_has_it():
    image1, image2 = random_image(), random_image(channels=4, seed=23)
    (out,) = batch.ImageBatch().batch(image1, image2)
    assert out.shape == (2, 16, 24, 4)
    assert torch.equal(out[0, ..., 3], torch.ones(16, 24))
    assert torch.equal(out[1], image2[0])


def test_image_contact_sheet_lays_images_out_in_rows_with_spacing():
    images = random_image(4, 5, count=5)
    (sheet,) = batch.ImageContactSheet().arrange(images, 3, 2, 0xFF0000)
    assert sheet.shape == (1, 2 * 4 + 2, 3 * 5 + 2 * 2, 3)
    for index in range(5):
        top, left = (index // 3) * 6, (index % 3) * 7
        assert torch.equal(sheet[0, top : top + 4, left : left + 5], images[index])
    assert torch.equal(sheet[0, 4, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(sheet[0, 6:, 14:], torch.tensor([1.0, 0.0, 0.0]).expand(4, 5, 3))


def test_image_contact_sheet_uses_no_more_columns_than_images():
    (sheet,) = batch.ImageContactSheet().arrange(random_image(4, 5, count=2), 8, 1, 0)
    assert sheet.shape == (1, 4, 11, 3)


def test_image_contact_sheet_reports_progress_and_stops_on_interrupt():
    reports = []
    ctx = context.NodeContext(on_progress=lambda value, total, preview=None: reports.append((value, total)))
    with context.use(ctx):
        batch.ImageContactSheet().arrange(random_image(2, 2, count=3), 2, 0, 0)
    assert reports == [(0, 3), (1, 3), (2, 3)]
    ctx.interrupt_event.set()
    with context.use(ctx), pytest.raises(Interrupted):
        batch.ImageContactSheet().arrange(random_image(2, 2, count=3), 2, 0, 0)
