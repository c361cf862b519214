from __future__ import annotations

import re

import pytest

from visionatrix.storage import TaskStorage, safe_name
from visionatrix.storage.names import MAX_NAME_CHARS, relative_parts

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("photo.png", "photo.png"),
        ("My Photo (1).JPG", "My_Photo_1.JPG"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Desktop\\cat.webp", "cat.webp"),
        ("/abs/path/dog.png", "dog.png"),
        ("café crème.png", "cafe_creme.png"),
        ("фото.png", "file.png"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        ("dir/", "file"),
        (".png", "file.png"),
        (".bashrc", "file.bashrc"),
        ("...hidden.txt", "hidden.txt"),
        ("a\x00b.png", "a_b.png"),
        ("line\nbreak.png", "line_break.png"),
        ("-rf.txt", "rf.txt"),
        ("archive.tar.gz", "archive.tar.gz"),
        ("name.", "name"),
        ("no_extension", "no_extension"),
        ("weird.ext with space", "weird.ext_with_space"),
        ("<script>.png", "script.png"),
    ],
)
def test_safe_name_cleans_a_client_file_name(given: str, expected: str):
    assert safe_name(given) == expected


@pytest.mark.parametrize("given", ["x" * 500 + ".png", "y" * 500, "é" * 300 + ".jpeg", "z" * 127 + ".longext"])
def test_safe_name_keeps_the_extension_within_the_length_limit(given: str):
    name = safe_name(given)

    assert len(name) <= MAX_NAME_CHARS
    if "." in given:
        assert name.endswith(given[given.rindex(".") :])


@pytest.mark.parametrize(
    "given", ["../x", "a/../../x", "..\\x", "\x00", "/", "\\", "..../", "🙂", " ", "CON", ".htaccess", "a" * 1000]
)
def test_every_safe_name_is_a_valid_stored_name(given: str):
    name = safe_name(given)

    assert SAFE.match(name), name
    assert relative_parts(name) == (name,)


def test_task_storage_exposes_safe_name():
    assert TaskStorage.safe_name("../a b.png") == "a_b.png"


@pytest.mark.parametrize("name", ["a.png", "sub/a.png", "a..b.png", "sub.dir/x"])
def test_relative_parts_accepts_a_file_or_one_subfolder(name: str):
    assert "/".join(relative_parts(name)) == name


@pytest.mark.parametrize(
    "name", ["", "/a", "a/", "a//b", "../a", "a/..", "./a", ".a", "a/.b", "a\\b", "a\x00", "a/b/c", "x" * 256]
)
def test_relative_parts_refuses_a_name_breaking_the_rules(name: str):
    with pytest.raises(ValueError):
        relative_parts(name)
