"""The models catalog: Visionatrix's format (``models_catalog.json``), read from files or http(s) URLs.

A catalog is a JSON object ``{name: entry}``; an entry has ``regexes`` (objects of ``class_name`` /
``input_name`` / ``input_value`` patterns that recognise the model in a graph), ``url``, ``hash`` (sha256),
``filename`` (default: the URL path's last part), ``types`` (the model folders; the first gives the install
folder, none: the models folder itself), ``file_size``, ``homepage``, ``gated`` and ``requires`` (names of other
entries a model needs beside it, such as a text encoder's tokenizer: a flow that loads the model needs them too).
``VIX_MODELS_CATALOG`` names one or more sources; a later source's entry replaces an earlier one of the same name;
``requires`` must name entries of the merged catalog. An entry without ``url`` is kept (flows still recognise it)
but cannot be installed. Torch-free.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from visionatrix.errors import ModelError, NotFound
from visionatrix.models.folders import FOLDER_ALIASES, safe_name

MAX_CATALOG_BYTES = 10 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REGEX_KEYS = frozenset({"class_name", "input_name", "input_value"})


@dataclass(frozen=True)
class CatalogModel:
    """One installable (or at least recognisable) model of the catalog."""

    name: str
    url: str
    """Empty when the catalog gives none: the model cannot be installed."""
    sha256: str | None
    filename: str
    """Relative to the install folder; may hold subfolders (``sliders/smiling.pt``)."""
    folder: str
    """Canonical ``types[0]``; ``""``: the models folder itself."""
    file_size: int | None
    homepage: str | None
    gated: bool
    types: tuple[str, ...]
    requires: tuple[str, ...] = ()
    """Other entries this model needs beside it (never graph inputs: a tokenizer its loader reads)."""

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder the model may be found in, canonical, first the install folder (``("",)`` for none)."""
        names = [FOLDER_ALIASES.get(kind, kind) for kind in self.types] or [""]
        return tuple(dict.fromkeys(names))


class ModelsCatalog:
    """Merged catalog entries: ``raw`` for the flow importer, :class:`CatalogModel` for installs."""

    def __init__(self, raw: Mapping[str, Mapping[str, Any]] | None = None, *, source: str = "models catalog") -> None:
        self.raw: dict[str, dict[str, Any]] = {}
        self._models: dict[str, CatalogModel] = {}
        self._sources: dict[str, str] = {}
        if raw:
            self.merge(raw, source)
            self.check_requires()

    def merge(self, entries: Any, source: str) -> None:
        """Add the entries of one source, replacing entries of the same names; every entry is checked first
        (``requires`` only by :meth:`check_requires`, once every source is merged)."""
        if not isinstance(entries, Mapping):
            raise ModelError(f"models catalog {source}: expected a JSON object of entries, "
                             f"got {type(entries).__name__}")
        checked = {str(name): _model(source, str(name), entry) for name, entry in entries.items()}
        for name, model in checked.items():
            self.raw[name] = {**entries[name], "filename": model.filename,
                              **({"hash": model.sha256} if model.sha256 else {})}
            self._models[name] = model
            self._sources[name] = source

    def check_requires(self) -> None:
        """:class:`ModelError` naming the entry, its source and the name when a ``requires`` names no entry."""
        for name, model in self._models.items():
            for needed in model.requires:
                if needed not in self._models:
                    raise ModelError(f"models catalog {self._sources.get(name, 'models catalog')}: entry {name!r}: "
                                     f"requires {needed!r}, but the catalog has no entry of that name")

    def with_required(self, names: Sequence[str]) -> list[str]:
        """``names`` with every entry they require (and those require, ...) each once, a required entry right after
        the first one that needs it; cycles are harmless. ``NotFound`` for a name not in the catalog."""
        result: dict[str, None] = {}

        def add(name: str) -> None:
            if name in result:
                return
            model = self.get(name)
            result[name] = None
            for needed in model.requires:
                add(needed)

        for name in names:
            add(name)
        return list(result)

    def get(self, name: str) -> CatalogModel:
        try:
            return self._models[name]
        except KeyError:
            raise NotFound("model", name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __len__(self) -> int:
        return len(self._models)

    def models(self) -> list[CatalogModel]:
        """Every model, by name."""
        return [self._models[name] for name in sorted(self._models)]

    def hosts(self) -> set[str]:
        """The host of every model URL (the default download allow-list)."""
        return {host for model in self._models.values() if (host := urlsplit(model.url).hostname)}

    def for_flow(self, flow_info: Mapping[str, Any]) -> list[CatalogModel]:
        """The catalog models among a flow's ``models`` (``Flow.info()`` shape) with the entries they require (a
        manifest written before an entry gained ``requires`` still gets them), each once, in flow order."""
        names = [str(ref.get("name")) for ref in flow_info.get("models") or ()
                 if isinstance(ref, Mapping) and ref.get("in_catalog")]
        known = [name for name in dict.fromkeys(names) if name in self._models]
        return [self._models[name] for name in self.with_required(known)]


def _model(source: str, name: str, entry: Any) -> CatalogModel:
    """The entry as a :class:`CatalogModel`; :class:`ModelError` naming ``source`` and the entry when it is wrong."""

    def bad(why: str) -> ModelError:
        return ModelError(f"models catalog {source}: entry {name!r}: {why}")

    if not isinstance(entry, Mapping):
        raise bad(f"expected an object, got {type(entry).__name__}")
    _check_regexes(entry.get("regexes"), bad)
    url = entry.get("url") or ""
    if not isinstance(url, str) or (url and urlsplit(url).scheme not in ("http", "https")):
        raise bad(f"url must be an http(s) URL, got {url!r}")
    filename = entry.get("filename") or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not isinstance(filename, str) or safe_name(filename) is None:
        raise bad(f"filename {filename!r} must be a relative path inside the model folder" if filename
                  else "has neither a url nor a filename")
    sha256 = entry.get("hash")
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
            raise bad(f"hash must be a sha256 of 64 hex digits, got {sha256!r}")
        sha256 = sha256.lower()
    types = entry.get("types") or []
    if not isinstance(types, list) or not all(isinstance(kind, str) and safe_name(kind) and "/" not in kind
                                              for kind in types):
        raise bad(f"types must be a list of folder names, got {types!r}")
    file_size = entry.get("file_size")
    if file_size is not None and (not isinstance(file_size, int) or isinstance(file_size, bool) or file_size < 0):
        raise bad(f"file_size must be a whole number of bytes, got {file_size!r}")
    homepage = entry.get("homepage")
    if homepage is not None and not isinstance(homepage, str):
        raise bad(f"homepage must be a string, got {homepage!r}")
    gated = entry.get("gated", False)
    if not isinstance(gated, bool):
        raise bad(f"gated must be true or false, got {gated!r}")
    requires = entry.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(needed, str) and needed for needed in requires):
        raise bad(f"requires must be a list of catalog entry names, got {requires!r}")
    folder = FOLDER_ALIASES.get(types[0], types[0]) if types else ""
    assert folder is not None
    return CatalogModel(name=name, url=url, sha256=sha256, filename=filename, folder=folder, file_size=file_size,
                        homepage=homepage, gated=gated, types=tuple(types),
                        requires=tuple(dict.fromkeys(needed for needed in requires if needed != name)))


def _check_regexes(regexes: Any, bad: Any) -> None:
    if regexes is None:
        return
    if not isinstance(regexes, list):
        raise bad(f"regexes must be a list of objects, got {type(regexes).__name__}")
    for rule in regexes:
        if not isinstance(rule, Mapping) or not rule or not set(rule) <= _REGEX_KEYS:
            raise bad(f"each regex must be an object with class_name, input_name or input_value, got {rule!r}")
        for key, pattern in rule.items():
            if not isinstance(pattern, str):
                raise bad(f"regex {key} must be a string, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise bad(f"bad regex {key} {pattern!r}: {exc}") from None


# --- loading ---------------------------------------------------------------------------------------------------


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _parse(source: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"models catalog {source}: not valid JSON: {exc}") from None


def _read_file(source: str) -> Any:
    path = Path(source).expanduser()
    try:
        if path.stat().st_size > MAX_CATALOG_BYTES:
            raise ModelError(f"models catalog {source}: larger than {MAX_CATALOG_BYTES} bytes")
        return _parse(source, path.read_bytes())
    except OSError as exc:
        raise ModelError(f"models catalog {source}: cannot read: {exc.strerror or exc}") from None


async def _fetch(session: aiohttp.ClientSession, source: str, timeout_s: float) -> Any:
    try:
        async with session.get(source, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                raise ModelError(f"models catalog {source}: HTTP {response.status}")
            if (response.content_length or 0) > MAX_CATALOG_BYTES:
                raise ModelError(f"models catalog {source}: larger than {MAX_CATALOG_BYTES} bytes")
            data = await response.content.read(MAX_CATALOG_BYTES + 1)
            if len(data) > MAX_CATALOG_BYTES:
                raise ModelError(f"models catalog {source}: larger than {MAX_CATALOG_BYTES} bytes")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ModelError(f"models catalog {source}: cannot fetch: {exc or type(exc).__name__}") from None
    return _parse(source, data)


async def load_catalog(sources: Sequence[str], *, session: aiohttp.ClientSession | None = None,
                       timeout_s: float = FETCH_TIMEOUT_S) -> ModelsCatalog:
    """The catalog merged from ``sources`` (files or http(s) URLs) in order; :class:`ModelError` for any source
    that cannot be read or holds a wrong entry (nothing is merged then)."""
    catalog = ModelsCatalog()
    own = session is None and any(_is_url(source) for source in sources)
    client = aiohttp.ClientSession() if own else session
    try:
        for source in sources:
            if _is_url(source):
                assert client is not None
                entries = await _fetch(client, source, timeout_s)
            else:
                entries = await asyncio.to_thread(_read_file, source)
            catalog.merge(entries, source)
    finally:
        if own and client is not None:
            await client.close()
    catalog.check_requires()
    return catalog


def load_catalog_sync(sources: Sequence[str]) -> ModelsCatalog:
    """:func:`load_catalog` for synchronous callers (the CLI); files are read without an event loop."""
    if any(_is_url(source) for source in sources):
        return asyncio.run(load_catalog(sources))
    catalog = ModelsCatalog()
    for source in sources:
        catalog.merge(_read_file(source), source)
    catalog.check_requires()
    return catalog
