from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from visionatrix.errors import InvalidInput, NotFound
from visionatrix.storage import TaskStorage, check_image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` and holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    ("fmt", "suffix", "mode"), [("PNG", ".png", "RGBA"), ("JPEG", ".jpg", "RGB"), ("WEBP", ".webp", "RGB")]
)
def test_check_image_returns_the_size_of_a_real_image(tmp_path: Path, fmt: str, suffix: str, mode: str):
    path = tmp_path / f"photo{suffix}"
    Image.new(mode, (37, 21), "red").save(path, fmt)

    assert check_image(path, max_pixels=37 * 21) == (37, 21)


def test_check_image_accepts_an_image_with_a_misleading_suffix(tmp_path: Path):
    path = tmp_path / "actually_png.jpg"
    Image.new("RGB", (4, 3)).save(path, "PNG")

    assert check_image(path, max_pixels=100) == (4, 3)


def test_check_image_refuses_one_pixel_over_the_limit(tmp_path: Path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (10, 10)).save(path)

    with pytest.raises(InvalidInput) as caught:
        check_image(path, max_pixels=99)

    assert caught.value.input_name == "image"
    assert "'photo.png'" in caught.value.message and "10x10" in caught.value.message


def test_check_image_refuses_a_text_file_naming_it(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("not an image at all\n")

    with pytest.raises(InvalidInput) as caught:
        check_image(path, max_pixels=10**6)

    assert caught.value.input_name == "image"
    assert "'notes.png'" in caught.value.message and "not a readable image" in caught.value.message


def test_check_image_refuses_a_truncated_png(tmp_path: Path):
    whole = tmp_path / "whole.png"
    Image.effect_noise((64, 64), 50).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:-40])

    with pytest.raises(InvalidInput, match=r"'cut\.png'"):
        check_image(cut, max_pixels=10**6)


def test_check_image_refuses_a_huge_header_from_its_dimensions_before_decoding(tmp_path: Path):
    # 5000 x 5000 is under PIL's own bomb limit, and the file has no pixel data: only our check can refuse it,
    # and it must do so from the header (decoding would fail with a different message).
    path = png_header_only(tmp_path / "bomb.png", 5000, 5000)

    with pytest.raises(InvalidInput, match=r"'bomb\.png' is 5000x5000: more than 1000000 pixels"):
        check_image(path, max_pixels=1_000_000)


def test_check_image_refuses_a_header_in_pils_warning_range_without_a_warning(tmp_path: Path):
    # 10000 x 10000 is over Image.MAX_IMAGE_PIXELS (PIL warns) but under twice it (PIL would still open it);
    # pytest turns warnings into errors here, so a leaked DecompressionBombWarning fails this test.
    path = png_header_only(tmp_path / "big.png", 10_000, 10_000)

    with pytest.raises(InvalidInput, match="more than 64000000 pixels"):
        check_image(path, max_pixels=64_000_000)


def test_check_image_refuses_a_header_past_pils_hard_limit(tmp_path: Path):
    path = png_header_only(tmp_path / "giant.png", 100_000, 100_000)

    with pytest.raises(InvalidInput, match=r"'giant\.png'.*pixels"):
        check_image(path, max_pixels=10**12)


def test_check_image_of_a_missing_file_is_not_found(tmp_path: Path):
    with pytest.raises(NotFound):
        check_image(tmp_path / "nope.png", max_pixels=100)


def test_check_image_refuses_a_format_outside_the_accepted_list(tmp_path: Path):
    path = tmp_path / "image.pcx"
    Image.new("RGB", (4, 4)).save(path, "PCX")

    with pytest.raises(InvalidInput, match=r"'image\.pcx'"):
        check_image(path, max_pixels=100)


def test_task_storage_exposes_check_image(tmp_path: Path):
    path = tmp_path / "p.png"
    Image.new("L", (2, 5)).save(path)

    assert TaskStorage.check_image(path, 10) == (2, 5)
    assert TaskStorage(tmp_path, max_upload_bytes=1).check_image(path, 10) == (2, 5)


def test_check_image_accepts_a_multi_picture_jpeg_as_phones_write_it(tmp_path: Path):
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (8, 6), "blue").save(path, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 6))])

    assert check_image(path, max_pixels=48) == (8, 6)


def test_check_image_refuses_a_small_png_without_pixel_data(tmp_path: Path):
    path = png_header_only(tmp_path / "hollow.png", 10, 10)

    with pytest.raises(InvalidInput, match=r"'hollow\.png' is not a readable image"):
        check_image(path, max_pixels=1000)
