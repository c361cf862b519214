"""InpaintCrop / InpaintStitch: crop boxes worked out by hand from the original's rules, crops checked against a
canvas built here with numpy (mirror padding, nearest upscale), resampling against Pillow and ComfyUI-style
bislerp, mask preparation against scipy where it is installed, and stitching back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_nodes.diffusion.latent_nodes import bislerp
from comfy_nodes.inpaint_crop import NODE_CLASS_MAPPINGS, InpaintCrop, InpaintStitch, geometry, mask_ops, resampling
from visionatrix.errors import InvalidInput

FLOW_SETTINGS = dict(  # InpaintCrop as flux1_dev_inpaint.json sets it
    context_expand_pixels=0, context_expand_factor=1, fill_mask_holes=False, blur_mask_pixels=12, invert_mask=False,
    blend_pixels=0, rescale_algorithm="bislerp", mode="ranged size", force_width=1024, force_height=1024,
    rescale_factor=1, min_width=512, min_height=512, max_width=1024, max_height=1024, padding=32)


def settings(**changes):
    plain = dict(FLOW_SETTINGS, blur_mask_pixels=0, rescale_algorithm="nearest", mode="free size", padding=8)
    return {**plain, **changes}


def picture(width=40, height=30, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((1, height, width, 3), dtype=np.float32))


def box_mask(width=40, height=30, rows=(10, 15), cols=(12, 20)):
    mask = torch.zeros(1, height, width)
    mask[0, rows[0]:rows[1], cols[0]:cols[1]] = 1.0
    return mask


def canvas_of(array: np.ndarray, fill_outside: float | None = None) -> np.ndarray:
    """The original's canvas for an [H, W, ...] array: top/bottom (W+1)//2, left/right (H+1)//2; mirrored as far
    as the picture reaches and zeros beyond, or ``fill_outside`` everywhere outside the picture."""
    h, w = array.shape[:2]
    top, left = (w + 1) // 2, (h + 1) // 2
    extra = [(0, 0)] * (array.ndim - 2)
    if fill_outside is not None:
        return np.pad(array, [(top, top), (left, left), *extra], constant_values=fill_outside)
    mirrored = np.pad(array, [(min(top, h),) * 2, (min(left, w),) * 2, *extra], mode="symmetric")
    return np.pad(mirrored, [(top - min(top, h),) * 2, (left - min(left, w),) * 2, *extra])


def test_nodes_match_the_original_interface():
    assert {"InpaintCrop": InpaintCrop, "InpaintStitch": InpaintStitch} == NODE_CLASS_MAPPINGS
    spec = InpaintCrop.INPUT_TYPES()
    assert list(spec["required"]) == [
        "image", "mask", "context_expand_pixels", "context_expand_factor", "fill_mask_holes", "blur_mask_pixels",
        "invert_mask", "blend_pixels", "rescale_algorithm", "mode", "force_width", "force_height", "rescale_factor",
        "min_width", "min_height", "max_width", "max_height", "padding"]
    assert list(spec["optional"]) == ["optional_context_mask"]
    assert spec["required"]["rescale_algorithm"][0] == [
        "nearest", "bilinear", "bicubic", "bislerp", "lanczos", "box", "hamming"]
    assert spec["required"]["mode"] == (["ranged size", "forced size", "free size"], {"default": "ranged size"})
    assert spec["required"]["padding"] == ([8, 16, 32, 64, 128, 256, 512], {"default": 32})
    assert spec["required"]["max_width"][1]["default"] == 768
    assert InpaintCrop.RETURN_TYPES == ("STITCH", "IMAGE", "MASK")
    assert InpaintStitch.INPUT_TYPES()["required"]["rescale_algorithm"][1] == {"default": "bislerp"}
    assert InpaintStitch.RETURN_TYPES == ("IMAGE",)


def test_free_size_crops_the_padded_mask_box_without_rescaling():
    image, mask = picture(), box_mask()  # mask: x 12..19, y 10..14
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(image, mask, **settings())
    # canvas offsets: left (30+1)//2 = 15, top (40+1)//2 = 20; box x 27..34 -> 8 wide, middle 30 -> 26..33;
    # y 30..34 -> 8 tall around middle 32 -> 28..35; i.e. picture x 11..18, y 8..15
    assert (stitch["x"], stitch["y"], stitch["start_x"], stitch["start_y"]) == ([26], [28], [15], [20])
    assert stitch["rescale_x"] == [1.0]
    assert torch.equal(crop, image[:, 8:16, 11:19])
    assert torch.equal(crop_mask, mask[:, 8:16, 11:19])


def test_a_crop_past_the_edge_reads_the_mirrored_picture_and_a_full_mask():
    image, mask = picture(), box_mask(rows=(0, 4), cols=(0, 4))
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(image, mask, **settings())
    # box x 15..18 -> 12..19 on the canvas (picture -3..4), y 20..23 -> 17..24 (picture -3..4)
    assert (stitch["x"], stitch["y"]) == ([12], [17])
    mirrored = [2, 1, 0, 0, 1, 2, 3, 4]
    assert torch.equal(crop, image[:, mirrored][:, :, mirrored])
    expected_mask = np.ones((8, 8), np.float32)
    expected_mask[3:, 3:] = mask[0, :5, :5].numpy()
    assert np.array_equal(crop_mask[0].numpy(), expected_mask)
    assert torch.equal(stitch["cropped_mask_blend"][0][0], mask[0][mirrored][:, mirrored])


def test_ranged_size_upscales_to_the_largest_size_within_the_maximum():
    image, mask = picture(), box_mask()
    options = settings(mode="ranged size", min_width=16, min_height=16, max_width=32, max_height=32)
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(image, mask, **options)
    # box 8 x 5 -> factor max(min(2, 3.2), min(4, 6.4)) = 4; canvas 70 -> 280; x 108..140 fitted to 32 px
    # (108..139), padded around 123 -> 107..138; y 120..140 (21 px) padded to 24 around 130 -> 118..141
    assert (stitch["x"], stitch["y"], stitch["rescale_x"], stitch["rescale_y"]) == ([107], [118], [4.0], [4.0])
    assert crop.shape == (1, 24, 32, 3) and crop_mask.shape == (1, 24, 32)
    upscaled = np.repeat(np.repeat(canvas_of(image[0].numpy()), 4, axis=0), 4, axis=1)
    assert np.array_equal(crop[0].numpy(), upscaled[118:142, 107:139])
    mask_canvas = np.repeat(np.repeat(canvas_of(mask[0].numpy(), fill_outside=1.0), 4, axis=0), 4, axis=1)
    assert np.array_equal(crop_mask[0].numpy(), mask_canvas[118:142, 107:139])


def test_ranged_size_widens_a_thin_box_to_an_allowed_aspect_ratio():
    extension = geometry.Extension.around(40, 30)
    options = geometry.CropSettings(0, 1.0, 0.0, "ranged size", 1024, 1024, 1.0, 8, 16, 16, 32, 32)
    plan = geometry.plan_crop(extension, (20, 21, 5, 24), options)
    # 2 x 20 (aspect 0.1 < 16/32): widened by int(20 * 0.5) - 2 = 8 -> x 31..40; factor min(32/10, 32/20) = 1.6;
    # x 50..66 (17 px) padded to 24 -> 46..69; y 40..72 cut to 32 -> 40..71, padded -> 39..70
    assert (plan.x_min, plan.x_max, plan.y_min, plan.y_max) == (46, 69, 39, 70)
    assert (plan.scaled_width, plan.scaled_height, plan.scale_x) == (112, 112, 1.6)


def test_forced_size_gives_every_image_of_a_batch_the_forced_size():
    image = torch.cat([picture(seed=1), picture(seed=2)])
    mask = torch.cat([box_mask(), box_mask(rows=(3, 25), cols=(2, 30))])
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(
        image, mask, **settings(mode="forced size", force_width=24, force_height=16, rescale_algorithm="bicubic"))
    assert crop.shape == (2, 16, 24, 3) and crop_mask.shape == (2, 16, 24)
    assert len(stitch["x"]) == 2
    with pytest.raises(InvalidInput) as caught:
        InpaintCrop().inpaint_crop(image, mask, **settings())
    assert caught.value.input_name == "mode"


def test_stitching_an_unchanged_crop_gives_the_original_back():
    image, mask = picture(), box_mask()
    stitch, crop, _ = InpaintCrop().inpaint_crop(image, mask, **settings(blend_pixels=4.0))
    (result,) = InpaintStitch().inpaint_stitch(stitch, crop, "bislerp")
    blend = stitch["cropped_mask_blend"][0][0]
    assert float(blend.min()) == 0.0 and float(blend.max()) > 0.9
    torch.testing.assert_close(result, image, atol=1e-6, rtol=0)


def test_stitch_pastes_the_resized_crop_where_the_mask_is_and_nothing_elsewhere():
    image, mask = picture(), box_mask()
    options = settings(mode="ranged size", min_width=16, min_height=16, max_width=32, max_height=32)
    stitch, crop, _ = InpaintCrop().inpaint_crop(image, mask, **options)
    inpainted = torch.rand(crop.shape, generator=torch.Generator().manual_seed(5))
    (result,) = InpaintStitch().inpaint_stitch(stitch, inpainted, "nearest")
    # back to ceil(32/4)+1 x ceil(24/4)+1 = 9 x 7 pixels at floor(107/4), floor(118/4) = 26, 29 on the canvas,
    # i.e. picture x 11..19, y 9..15
    def nearest(plane):
        return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((9, 7), Image.Resampling.NEAREST))

    small = np.stack([nearest(inpainted[0, ..., c].numpy()) for c in range(3)], axis=-1)
    blend = nearest(stitch["cropped_mask_blend"][0][0].numpy())[..., None]
    assert 0 < blend.sum() < blend.size
    expected = image[0].numpy().copy()
    expected[9:16, 11:20] = np.where(blend > 0, small, expected[9:16, 11:20])
    assert np.array_equal(result[0].numpy(), expected)


def test_empty_masks_make_the_whole_picture_the_context():
    image = picture()
    placeholder = torch.zeros(1, 64, 64)  # what LoadImage gives for a picture without alpha
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(image, placeholder, **settings())
    # x 15..54 (40 px, middle 34) -> 14..53; y 20..49 (30 px -> 32, middle 34) -> 18..49
    assert (stitch["x"], stitch["y"], crop.shape) == ([14], [18], (1, 32, 40, 3))
    assert float(crop_mask[0, 2:, 1:].max()) == 0.0 and float(crop_mask[0, :2].min()) == 1.0
    with pytest.raises(InvalidInput) as caught:
        InpaintCrop().inpaint_crop(image, torch.ones(1, 64, 64), **settings())
    assert caught.value.input_name == "mask"


def test_context_mask_and_context_expansion_widen_the_box():
    image, mask = picture(), box_mask()
    context = box_mask(rows=(20, 22), cols=(30, 32))
    stitch, crop, _ = InpaintCrop().inpaint_crop(image, mask, optional_context_mask=context, **settings())
    # x 27..46 (20 px -> 24, middle 36) -> 24..47; y 30..41 (12 px -> 16, middle 35) -> 27..42
    assert (stitch["x"], stitch["y"], crop.shape) == ([24], [27], (1, 16, 24, 3))
    stitch, crop, _ = InpaintCrop().inpaint_crop(image, mask, **settings(context_expand_pixels=10))
    # grow 10 -> 5 each side: x 22..39 (18 -> 24, middle 30) -> 18..41; y 25..39 (15 -> 16, middle 32) -> 24..39
    assert (stitch["x"], stitch["y"], crop.shape) == ([18], [24], (1, 16, 24, 3))


def test_invert_mask_crops_around_everything_but_the_mask():
    image, mask = picture(), box_mask()
    _, _, crop_mask = InpaintCrop().inpaint_crop(image, mask, **settings(invert_mask=True))
    assert crop_mask.shape == (1, 32, 40)
    assert float(crop_mask[0, 2 + 10, 1 + 12]) == 0.0 and float(crop_mask[0, 2, 1]) == 1.0


def test_grow_and_blur_reaches_further_right_with_an_even_square():
    impulse = torch.zeros(1, 1, 40)
    impulse[0, 0, 20] = 1.0
    grown = mask_ops.dilate(impulse.expand(1, 3, 40).clone(), 6)  # pixels 12: sigma 3, square ceil(5.5) = 6
    assert torch.nonzero(grown[0, 1]).flatten().tolist() == [17, 18, 19, 20, 21, 22]
    blurred = mask_ops.grow_and_blur(torch.ones(1, 9, 9), 12.0)
    torch.testing.assert_close(blurred, torch.ones(1, 9, 9))


def test_mask_preparation_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    for trial in range(6):
        mask = (rng.random((30, 36)) > 0.7).astype(np.float32)
        if trial % 2:
            mask[:] = 0
            mask[4:26, 5:30], mask[10:18, 12:20], mask[0:2, 33] = 1, 0, 1
        filled = ndimage.binary_fill_holes(ndimage.binary_closing(mask > 0, np.ones((5, 5)), border_value=1))
        assert np.array_equal(mask_ops.fill_holes(torch.from_numpy(mask)[None])[0].numpy(), filled)
        for pixels in (3.0, 12.0, 16.0):
            sigma, size = pixels / 4, int(np.ceil(pixels / 4 * 1.5 + 1))
            grown = np.clip(ndimage.grey_dilation(mask, footprint=np.ones((size, size))) * 255, 0, 1)
            expected = np.clip(ndimage.gaussian_filter(grown, sigma), 0, 1)
            got = mask_ops.grow_and_blur(torch.from_numpy(mask)[None], pixels)[0].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-5)
            assert np.array_equal(got > 0, expected > 0)


def test_fill_holes_fills_enclosed_areas_and_narrow_gaps_to_the_edge():
    ring = torch.zeros(1, 30, 30)
    ring[0, 8:20, 8:20] = 1
    ring[0, 11:17, 11:17] = 0  # an enclosed hole
    ring[0, 27, 10] = 1  # 2 pixels from the bottom edge: the closing joins it to the edge
    filled = mask_ops.fill_holes(ring)[0]
    assert float(filled[8:20, 8:20].min()) == 1.0
    assert filled[26:, 10].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert float(filled[:6].max()) == 0.0 and float(filled[29, 0]) == 0.0


@pytest.mark.parametrize("algorithm", ["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"])
@pytest.mark.parametrize("size", [(40, 29), (7, 5), (34, 26)])
def test_pillow_filters_match_pillow_float_resize(algorithm, size):
    array = np.random.default_rng(1).random((13, 17, 3), dtype=np.float32)
    pil_filter = getattr(Image.Resampling, algorithm.upper())
    expected = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c])).resize(size, pil_filter))
                         for c in range(3)], axis=-1)
    got = resampling.resize(torch.from_numpy(array).permute(2, 0, 1)[None], *size, algorithm)
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), expected, atol=2e-6)


def test_bislerp_matches_the_latent_bislerp_and_windows_match_the_whole():
    planes = torch.from_numpy(np.random.default_rng(2).random((1, 3, 9, 11), dtype=np.float32))
    whole = resampling.resize(planes, 30, 20, "bislerp")
    torch.testing.assert_close(whole, bislerp(planes, 30, 20), atol=2e-6, rtol=0)

    def gather(rows, cols):
        return planes.index_select(2, rows).index_select(3, cols)

    for algorithm in ("bislerp", "lanczos"):
        full = resampling.resize(planes, 30, 20, algorithm)
        window = resampling.resample_window(gather, (11, 9), (30, 20), (4, 13, 6, 17), algorithm)
        torch.testing.assert_close(window, full[:, :, 6:17, 4:13], atol=1e-6, rtol=0)


def test_flow_settings_crop_to_a_padded_size_within_the_limits():
    image = picture(200, 150)
    mask = box_mask(200, 150, rows=(50, 80), cols=(60, 100))
    stitch, crop, crop_mask = InpaintCrop().inpaint_crop(image, mask, **FLOW_SETTINGS)
    height, width = crop.shape[1:3]
    assert width % 32 == 0 and height % 32 == 0
    assert 512 <= max(width, height) <= 1024
    assert float(crop_mask.max()) == 1.0 and 0.0 < float(crop_mask.mean()) < 1.0
    (result,) = InpaintStitch().inpaint_stitch(stitch, crop, "bislerp")
    far = torch.ones(150, 200, dtype=torch.bool)
    far[30:100, 40:120] = False  # beyond the blurred mask's reach
    assert torch.equal(result[0][far], image[0][far])


def test_stitch_refuses_a_batch_that_does_not_match():
    image, mask = picture(), box_mask()
    stitch, crop, _ = InpaintCrop().inpaint_crop(image, mask, **settings())
    with pytest.raises(InvalidInput) as caught:
        InpaintStitch().inpaint_stitch(stitch, torch.cat([crop, crop]), "bislerp")
    assert caught.value.input_name == "inpainted_image"
    with pytest.raises(InvalidInput):
        InpaintStitch().inpaint_stitch(stitch, crop, "cubic")


def test_the_pack_loads_from_the_core_nodes_folder():
    from visionatrix.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    registry.load_packs([], core_dir=Path(__file__).resolve().parents[3] / "comfy_nodes")
    assert registry.node_class("InpaintCrop") is not None and registry.node_class("InpaintStitch") is not None
    assert not [failure for failure in registry.failures if "inpaint_crop" in failure.name]


def test_the_corpus_flow_settings_validate_and_run_in_a_graph(tmp_path):
    """InpaintCrop and InpaintStitch with the widget values of flux1_dev_inpaint.json, wired through the executor."""
    import asyncio
    import json

    from tests.corpus import VIXFLOWS
    from visionatrix.executor.run import Executor, ExecutorSettings
    from visionatrix.nodes.registry import NodeRegistry

    flow = json.loads((VIXFLOWS / "flux1_dev_inpaint.json").read_text())
    crop_inputs = {**flow["32"]["inputs"], "image": ["1", 0], "mask": ["3", 0], "optional_context_mask": ["3", 0]}
    stitch_inputs = {**flow["31"]["inputs"], "stitch": ["4", 0], "inpainted_image": ["4", 1]}
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0xFF0000}},
        "3": {"class_type": "ImageToMask", "inputs": {"image": ["2", 0], "channel": "red"}},
        "4": {"class_type": "InpaintCrop", "inputs": crop_inputs},
        "5": {"class_type": "InpaintStitch", "inputs": stitch_inputs},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "stitched"}},
    }
    registry = NodeRegistry()
    registry.load_packs([], core_dir=Path(__file__).resolve().parents[3] / "comfy_nodes")
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path, output_dir=tmp_path / "out",
                                                   temp_dir=tmp_path / "temp"))
    try:
        result = asyncio.run(executor.execute(graph))
    finally:
        executor.close()
    (item,) = result.ui["6"]["images"]
    with Image.open(tmp_path / "out" / item["subfolder"] / item["filename"]) as saved:
        assert saved.size == (64, 48)
        assert np.unique(np.asarray(saved.convert("RGB")).reshape(-1, 3), axis=0).tolist() == [[0x33, 0x66, 0x99]]
