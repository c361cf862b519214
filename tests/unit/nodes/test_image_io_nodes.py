"""The image_io pack: loading from the input folder safely, saving PNGs ComfyUI's way, previews."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_nodes.image_io import LoadImage, LoadImageMask, PreviewImage, SaveImage, naming, savers
from visionatrix.errors import InvalidInput
from visionatrix.nodes.context import NodeContext, use

RED, BLACK = (255, 0, 0), (0, 0, 0)


@pytest.fixture
def ctx(tmp_path: Path):
    folders = {name: tmp_path / name for name in ("input", "output", "temp")}
    for folder in folders.values():
        folder.mkdir()
    context = NodeContext(input_dir=folders["input"], output_dir=folders["output"], temp_dir=folders["temp"])
    with use(context):
        yield context


def _save_rgb(path: Path, size=(4, 2), pixels=None, **save_options) -> Path:
    image = Image.new("RGB", size, BLACK)
    for xy, colour in (pixels or {}).items():
        image.putpixel(xy, colour)
    image.save(path, **save_options)
    return path


def _read_png(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
    return image


def _load(name: str):
    return LoadImage().run(image=name)


def test_load_image_turns_the_picture_upright_by_its_exif_orientation(ctx):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    _save_rgb(ctx.input_dir / "phone.png", size=(4, 2), pixels={(0, 0): RED}, exif=exif)
    image, _ = _load("phone.png")
    assert image.shape == (1, 4, 2, 3)
    assert image[0, 0, 1].tolist() == [1.0, 0.0, 0.0]
    assert image[0, 0, 0].tolist() == [0.0, 0.0, 0.0]


def test_load_image_outputs_float_pixels_between_0_and_1(ctx):
    _save_rgb(ctx.input_dir / "a.png", pixels={(1, 1): (255, 128, 0)})
    image, _ = _load("a.png")
    assert image.dtype == torch.float32
    assert image[0, 1, 1].tolist() == pytest.approx([1.0, 128 / 255, 0.0])


def test_load_image_mask_is_one_minus_alpha(ctx):
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.putpixel((2, 1), (10, 20, 30, 51))
    rgba.save(ctx.input_dir / "cutout.png")
    image, mask = _load("cutout.png")
    assert image.shape == (1, 2, 3, 3)
    assert mask.shape == (1, 2, 3)
    assert mask[0, 0, 0].item() == 1.0
    assert mask[0, 1, 2].item() == pytest.approx(0.8)
    assert mask[0, 0, 1].item() == 0.0


def test_load_image_without_alpha_gives_comfyui_empty_64x64_mask(ctx):
    _save_rgb(ctx.input_dir / "opaque.jpg", size=(10, 6), format="JPEG")
    _, mask = _load("opaque.jpg")
    assert mask.shape == (1, 64, 64)
    assert not mask.any()


def test_load_image_reads_palette_transparency_into_the_mask(ctx):
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.putpixel((1, 0), 1)
    palette.save(ctx.input_dir / "p.png", transparency=0)
    _, mask = _load("p.png")
    assert mask[0].tolist() == [[1.0, 0.0]]


def test_load_image_returns_every_frame_of_an_animation_as_a_batch(ctx):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (5, 4), colour) for colour in colours]
    frames[0].save(ctx.input_dir / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    image, mask = _load("anim.gif")
    assert image.shape == (3, 4, 5, 3)
    assert [image[i, 0, 0].argmax().item() for i in range(3)] == [0, 1, 2]
    assert mask.shape[0] == 3


def test_load_image_scales_16_bit_grey_to_0_1(ctx):
    grey = Image.new("I;16", (2, 1))
    grey.putpixel((0, 0), 65535)
    grey.putpixel((1, 0), 32768)
    grey.save(ctx.input_dir / "deep.png")
    image, _ = _load("deep.png")
    assert image[0, 0, 0].tolist() == pytest.approx([1.0] * 3)
    assert image[0, 0, 1].tolist() == pytest.approx([32768 / 65535] * 3)


def test_load_image_lists_the_sorted_image_files_of_the_input_folder_with_upload(ctx):
    for name in ("b.png", "a.jpg", "notes.txt", ".hidden.png"):
        (ctx.input_dir / name).write_bytes(b"x")
    (ctx.input_dir / "folder.png").mkdir()
    choices, options = LoadImage.INPUT_TYPES()["required"]["image"]
    assert choices == ["a.jpg", "b.png"]
    assert options == {"image_upload": True}


def test_load_image_accepts_a_subfolder_inside_the_input_folder(ctx):
    (ctx.input_dir / "uploads").mkdir()
    _save_rgb(ctx.input_dir / "uploads" / "x.png", size=(3, 3))
    image, _ = _load("uploads/x.png")
    assert image.shape == (1, 3, 3, 3)


@pytest.mark.parametrize("name", ["../outside.png", "uploads/../../outside.png"])
def test_load_image_refuses_a_name_climbing_out_of_the_input_folder(ctx, name):
    _save_rgb(ctx.input_dir.parent / "outside.png")
    with pytest.raises(InvalidInput) as caught:
        _load(name)
    assert caught.value.input_name == "image"


def test_load_image_refuses_an_absolute_path(ctx):
    outside = _save_rgb(ctx.input_dir.parent / "outside.png")
    with pytest.raises(InvalidInput) as caught:
        _load(str(outside))
    assert caught.value.input_name == "image"


def test_load_image_refuses_a_symlink_pointing_out_of_the_input_folder(ctx):
    outside = _save_rgb(ctx.input_dir.parent / "outside.png")
    os.symlink(outside, ctx.input_dir / "link.png")
    with pytest.raises(InvalidInput, match="outside") as caught:
        _load("link.png")
    assert caught.value.input_name == "image"


def test_load_image_reports_a_missing_file_naming_image(ctx):
    with pytest.raises(InvalidInput, match="does not exist") as caught:
        _load("nothing.png")
    assert caught.value.input_name == "image"


def test_load_image_reports_a_file_that_is_not_an_image(ctx):
    (ctx.input_dir / "fake.png").write_text("definitely not a PNG")
    with pytest.raises(InvalidInput, match="not a readable image") as caught:
        _load("fake.png")
    assert caught.value.input_name == "image"


def test_load_image_reports_a_truncated_image(ctx):
    data = _save_rgb(ctx.input_dir / "full.png", size=(64, 64)).read_bytes()
    (ctx.input_dir / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput) as caught:
        _load("cut.png")
    assert caught.value.input_name == "image"


def test_load_image_refuses_more_pixels_than_the_context_allows(ctx):
    _save_rgb(ctx.input_dir / "big.png", size=(20, 10))
    ctx.max_image_pixels = 199
    with pytest.raises(InvalidInput, match="over the limit") as caught:
        _load("big.png")
    assert caught.value.input_name == "image"
    ctx.max_image_pixels = 200
    assert _load("big.png")[0].shape == (1, 10, 20, 3)


def test_load_image_fingerprint_changes_when_the_file_content_changes(ctx):
    path = _save_rgb(ctx.input_dir / "a.png")
    first = LoadImage.IS_CHANGED(image="a.png")
    assert first == LoadImage.IS_CHANGED(image="a.png")
    _save_rgb(path, pixels={(0, 0): RED})
    assert LoadImage.IS_CHANGED(image="a.png") != first


def test_load_image_validation_accepts_an_existing_file_and_explains_a_missing_one(ctx):
    _save_rgb(ctx.input_dir / "a.png")
    assert LoadImage.VALIDATE_INPUTS(image="a.png") is True
    assert "does not exist" in LoadImage.VALIDATE_INPUTS(image="b.png")
    assert "not a name inside" in LoadImageMask.VALIDATE_INPUTS(image="../a.png")


@pytest.mark.parametrize(("channel", "expected"), [("red", 1.0), ("green", 0.0), ("blue", 0.2)])
def test_load_image_mask_reads_the_chosen_colour_channel(ctx, channel, expected):
    _save_rgb(ctx.input_dir / "c.png", size=(2, 2), pixels={(1, 0): (255, 0, 51)})
    (mask,) = LoadImageMask().run(image="c.png", channel=channel)
    assert mask.shape == (1, 2, 2)
    assert mask[0, 0, 1].item() == pytest.approx(expected)
    assert mask[0, 1, 1].item() == 0.0


def test_load_image_mask_inverts_alpha_and_gives_zeros_without_alpha(ctx):
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(ctx.input_dir / "a.png")
    _save_rgb(ctx.input_dir / "opaque.png", size=(2, 1))
    assert LoadImageMask().run(image="a.png", channel="alpha")[0].tolist() == [[[1.0, 0.0]]]
    assert LoadImageMask().run(image="opaque.png", channel="alpha")[0].tolist() == [[[0.0, 0.0]]]


def _batch(count=1, height=48, width=64, channels=3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand((count, height, width, channels), generator=generator)


def test_save_image_continues_after_the_highest_existing_counter_of_the_prefix(ctx):
    for name in ("ComfyUI_00002_.png", "ComfyUI_00007_.png", "Other_00050_.png", "ComfyUI_notes.txt"):
        (ctx.output_dir / name).write_bytes(b"")
    result = SaveImage().run(images=_batch(2), filename_prefix="ComfyUI")
    assert [entry["filename"] for entry in result["ui"]["images"]] == ["ComfyUI_00008_.png", "ComfyUI_00009_.png"]
    assert (ctx.output_dir / "ComfyUI_00009_.png").is_file()


def test_save_image_starts_at_counter_1_and_reports_files_for_the_ui(ctx):
    result = SaveImage().run(images=_batch(1), filename_prefix="shot")
    assert result["ui"] == {"images": [{"filename": "shot_00001_.png", "subfolder": "", "type": "output"}]}
    assert SaveImage.OUTPUT_NODE is True
    assert SaveImage.INPUT_TYPES()["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def test_save_image_writes_the_pixels_it_was_given_truncated_as_comfyui_does(ctx):
    images = _batch(1, height=5, width=7)
    images[0, 0, 0] = torch.tensor([0.999, 0.5, 1.5])  # 254.7 -> 254 (not 255), 127.5 -> 127, over 1 -> 255
    SaveImage().run(images=images, filename_prefix="px")
    saved = np.asarray(_read_png(ctx.output_dir / "px_00001_.png"), dtype=np.uint8)
    assert saved.shape == (5, 7, 3)
    expected = np.clip(images[0].numpy() * np.float32(255), 0, 255).astype(np.uint8)  # float32, as ComfyUI
    assert np.array_equal(saved, expected)
    assert saved[0, 0].tolist() == [254, 127, 255]


def test_save_image_writes_greyscale_and_alpha_batches(ctx):
    SaveImage().run(images=_batch(1, channels=1), filename_prefix="grey")
    SaveImage().run(images=_batch(1, channels=4), filename_prefix="alpha")
    assert _read_png(ctx.output_dir / "grey_00001_.png").mode == "L"
    assert _read_png(ctx.output_dir / "alpha_00001_.png").mode == "RGBA"


def test_save_image_embeds_prompt_and_every_extra_pnginfo_key_as_json_text(ctx):
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 5}}}
    extra = {"workflow": {"nodes": [1, 2]}, "vix": "task-9"}
    SaveImage().run(images=_batch(1), filename_prefix="meta", prompt=prompt, extra_pnginfo=extra)
    text = _read_png(ctx.output_dir / "meta_00001_.png").text
    assert json.loads(text["prompt"]) == prompt
    assert json.loads(text["workflow"]) == {"nodes": [1, 2]}
    assert json.loads(text["vix"]) == "task-9"


def test_save_image_without_prompt_writes_no_text_chunks(ctx):
    SaveImage().run(images=_batch(1), filename_prefix="bare")
    assert _read_png(ctx.output_dir / "bare_00001_.png").text == {}


def test_save_image_puts_files_in_the_prefix_subfolder_with_size_tokens(ctx):
    result = SaveImage().run(images=_batch(1), filename_prefix="runs/%width%x%height%/img")
    assert result["ui"]["images"] == [{"filename": "img_00001_.png", "subfolder": "runs/64x48", "type": "output"}]
    assert (ctx.output_dir / "runs" / "64x48" / "img_00001_.png").is_file()


def test_save_image_substitutes_date_and_time_tokens(ctx):
    before = dt.datetime.now()
    result = SaveImage().run(images=_batch(1), filename_prefix="%year%-%month%-%day%_%hour%%minute%%second%")
    after = dt.datetime.now()
    stem = result["ui"]["images"][0]["filename"].removesuffix("_00001_.png")
    stamped = dt.datetime.strptime(stem, "%Y-%m-%d_%H%M%S")
    assert before.replace(microsecond=0) <= stamped <= after


@pytest.mark.parametrize("prefix", ["../escape", "a/../../escape", "/tmp/escape", "sub/"])
def test_save_image_refuses_a_prefix_escaping_the_output_folder(ctx, prefix):
    with pytest.raises(InvalidInput) as caught:
        SaveImage().run(images=_batch(1), filename_prefix=prefix)
    assert caught.value.input_name == "filename_prefix"
    assert not list(ctx.output_dir.parent.glob("escape*"))


def test_save_image_refuses_a_subfolder_symlinked_out_of_the_output_folder(ctx, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, ctx.output_dir / "link")
    with pytest.raises(InvalidInput, match="outside"):
        SaveImage().run(images=_batch(1), filename_prefix="link/img")
    assert list(elsewhere.iterdir()) == []


def test_save_image_refuses_a_tensor_that_is_not_an_image_batch(ctx):
    with pytest.raises(InvalidInput) as caught:
        SaveImage().run(images=torch.zeros((4, 4, 3)), filename_prefix="x")
    assert caught.value.input_name == "images"


def test_save_takes_the_next_counter_when_a_racing_writer_took_this_one(ctx):
    target = naming.plan_target(ctx.output_dir, "race")
    (ctx.output_dir / "race_00003_.png").write_bytes(b"other writer")
    filename, next_counter = savers._write_new(target, 3, b"mine")
    assert (filename, next_counter) == ("race_00004_.png", 5)
    assert (ctx.output_dir / "race_00003_.png").read_bytes() == b"other writer"


def test_preview_image_writes_into_the_temp_folder_under_a_random_prefix(ctx):
    first = PreviewImage().run(images=_batch(2))["ui"]["images"]
    second = PreviewImage().run(images=_batch(1))["ui"]["images"]
    assert [entry["type"] for entry in first + second] == ["temp"] * 3
    assert all(re.fullmatch(r"ComfyUI_temp_[a-z]{5}_\d{5}_\.png", entry["filename"]) for entry in first + second)
    assert first[0]["filename"][:18] != second[0]["filename"][:18]
    assert all((ctx.temp_dir / entry["filename"]).is_file() for entry in first + second)
    assert list(ctx.output_dir.iterdir()) == []
