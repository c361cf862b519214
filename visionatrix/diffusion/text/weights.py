"""ComfyUI's weighted prompt syntax: ``(words)`` weighs the words 1.1 times, ``(words:1.4)`` 1.4 times; groups nest and
multiply (``((a))`` is 1.21, ``(a (b:2))`` gives ``b`` 2.2); ``\\(`` and ``\\)`` are literal parentheses (``\\\\`` a
backslash). A parenthesis without its partner is text. A group whose ``:`` is not followed by a number is text with
the default 1.1 weight (``(time: noon)`` → ``time: noon`` at 1.1).

``parse_weights(text)`` gives ``[(text, weight)]`` in order, neighbours of equal weight joined; a prompt without any
group is one piece of weight 1.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_GROUP_WEIGHT = 1.1
_WEIGHT = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$")
_ESCAPES = {"(": "(", ")": ")", "\\": "\\"}


@dataclass
class _Group:
    """Text and nested groups; ``opened`` is False for the whole prompt."""

    parts: list[str | _Group] = field(default_factory=list)
    opened: bool = False


def _char_tokens(text: str) -> list[tuple[str, bool]]:
    """``(character, is_syntax)``: an escaped parenthesis (or backslash) is plain text."""
    tokens: list[tuple[str, bool]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPES:
            tokens.append((_ESCAPES[text[index + 1]], False))
            index += 2
            continue
        tokens.append((char, char in "()"))
        index += 1
    return tokens


def _tree(text: str) -> _Group:
    root = _Group()
    stack = [root]
    for char, syntax in _char_tokens(text):
        if syntax and char == "(":
            group = _Group(opened=True)
            stack[-1].parts.append(group)
            stack.append(group)
        elif syntax and char == ")" and len(stack) > 1:
            stack.pop()
        else:
            _append_text(stack[-1], char)
    while len(stack) > 1:  # "(" never closed: the parenthesis and its content are text of the enclosing group
        group = stack.pop()
        parent = stack[-1]
        parent.parts.pop()
        _append_text(parent, "(")
        for part in group.parts:
            if isinstance(part, str):
                _append_text(parent, part)
            else:
                parent.parts.append(part)
    return root


def _append_text(group: _Group, text: str) -> None:
    if group.parts and isinstance(group.parts[-1], str):
        group.parts[-1] += text
    else:
        group.parts.append(text)


def _flatten(group: _Group, weight: float, out: list[tuple[str, float]]) -> None:
    parts = list(group.parts)
    if group.opened:
        factor = DEFAULT_GROUP_WEIGHT
        if parts and isinstance(parts[-1], str) and (match := _WEIGHT.search(parts[-1])):
            factor = float(match.group(1))
            parts[-1] = parts[-1][: match.start()]
        weight *= factor
    for part in parts:
        if isinstance(part, str):
            if part:
                out.append((part, weight))
        else:
            _flatten(part, weight, out)


def parse_weights(text: str) -> list[tuple[str, float]]:
    """The prompt as ``[(text, weight)]`` (see the module docstring)."""
    pieces: list[tuple[str, float]] = []
    _flatten(_tree(text), 1.0, pieces)
    merged: list[tuple[str, float]] = []
    for piece, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece, weight)
        else:
            merged.append((piece, weight))
    return merged or [("", 1.0)]
