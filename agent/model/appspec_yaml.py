"""Reading appspec YAML safely: any text or bytes gives a document or a list of problems, never a traceback.

Hostile or broken input is expected here (an appspec arrives inside a downloaded revision), so:
- only :class:`yaml.SafeLoader` constructors, in a subclass (the global loader is left untouched);
- aliases are checked on the node graph *before* construction: a recursive alias is refused and a document whose
  aliases expand to more than ``MAX_NODES`` values ("billion laughs", merge-key bombs) is refused;
- timestamps stay text and integers too long for ``int()`` stay text (both would raise ``ValueError``);
- syntax errors are reported with their line and column;
- the raw text of every ``permissions[i].mode`` scalar is kept, because ``mode`` is read as octal digits
  (SPEC §1 Departure: unquoted ``0644`` and ``644`` both mean rw-r--r--).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.model.appspec_types import Problem, key_text

MAX_BYTES = 10 * 1024 * 1024
MAX_NODES = 100_000

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


class YamlUnreadable(Exception):
    """The text is not a YAML document berth can read; ``problem`` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class RawScalar:
    """The source text of a plain or quoted scalar, and whether YAML read it as null."""

    text: str
    is_null: bool


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    # permissions index -> raw text of its ``mode`` scalar (absent when mode is missing or not a scalar)
    raw_modes: dict[int, RawScalar]
    warnings: tuple[Problem, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes repeated keys and never raises ValueError while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[Problem] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    self.duplicate_keys.append(
                        Problem(
                            "",
                            f"line {key_node.start_mark.line + 1}: key {key_text(key_node.value)!r} appears twice in "
                            "the same mapping; YAML keeps only the last one, so merge the two entries",
                        )
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        # Python refuses int() of very long digit strings; keep the text so validation names the value.
        return node.value


def _construct_timestamp(loader: yaml.SafeLoader, node: ScalarNode) -> str:
    # An appspec has no timestamps, and invalid dates (2001-02-30) make PyYAML raise ValueError.
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def decode(data: str | bytes) -> str:
    """Text of an appspec given as bytes (UTF-8, or UTF-16 with a byte-order mark); raises YamlUnreadable."""
    if isinstance(data, str):
        return data
    if len(data) > MAX_BYTES:
        raise YamlUnreadable(_too_big())
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlUnreadable(
            Problem(
                "",
                f"line {line}: the file is not valid {encoding.removesuffix('-sig').upper()} text (byte "
                f"0x{data[exc.start]:02x} at offset {exc.start}); save the appspec as UTF-8",
            )
        ) from None


def load(data: str | bytes) -> YamlDocument:
    """Parse one YAML document. Raises :class:`YamlUnreadable` (never anything else) when that is impossible."""
    text = decode(data)
    if len(text) > MAX_BYTES:
        raise YamlUnreadable(_too_big())
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks for unprintable characters at once
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {}, ())
        _check_size(node)
        value = loader.construct_document(node)
        raw_modes = _raw_modes(node)
        return YamlDocument(value, raw_modes, tuple(loader.duplicate_keys))
    except yaml.MarkedYAMLError as exc:
        raise YamlUnreadable(_marked(exc)) from None
    except yaml.reader.ReaderError as exc:
        raise YamlUnreadable(_reader(exc, text)) from None
    except yaml.YAMLError as exc:  # any other PyYAML error: still a readable message, never a traceback
        raise YamlUnreadable(Problem("", f"cannot read the YAML: {exc}")) from None
    except RecursionError:
        raise YamlUnreadable(
            Problem("", "the YAML is nested too deeply to read; an appspec needs only a few levels")
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _too_big() -> Problem:
    return Problem("", f"the appspec is larger than {MAX_BYTES // (1024 * 1024)} MiB; an appspec is a short file")


def _marked(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "invalid YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    extra = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        extra = f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
    return Problem("", f"{kind} at {where}{what}{extra}; fix the YAML there")


def _reader(exc: yaml.reader.ReaderError, text: str) -> Problem:
    pos = max(0, min(exc.position, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char: object = exc.character
    if isinstance(char, str) and len(char) == 1:
        char = ord(char)
    shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
    return Problem(
        "",
        f"line {line}, column {column}: character {shown} is not allowed in YAML; remove it "
        "(control characters must be written as escapes inside double quotes)",
    )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: Node) -> None:
    """Refuse recursive aliases and documents whose aliases expand past ``MAX_NODES`` values.

    Iterative depth-first walk with memoised sizes, so shared (aliased) nodes cost one visit each.
    """
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        ident = id(node)
        if finished:
            active.discard(ident)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > MAX_NODES:
                raise YamlUnreadable(
                    Problem(
                        "",
                        f"the YAML expands to more than {MAX_NODES} values through aliases (*name); an appspec "
                        "needs far fewer, so remove the repeated aliases",
                    )
                )
            size[ident] = total
            continue
        if ident in size:
            continue
        active.add(ident)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                mark = child.start_mark
                raise YamlUnreadable(
                    Problem(
                        "",
                        f"YAML error at line {mark.line + 1}, column {mark.column + 1}: an alias refers to a "
                        "value that contains it (a recursive structure); an appspec cannot contain one",
                    )
                )
            if id(child) not in size:
                stack.append((child, False))


def _last_value(mapping: MappingNode, key: str) -> Node | None:
    found: Node | None = None
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.tag == _STR and key_node.value == key:
            found = value_node
    return found


def _raw_modes(root: Node) -> dict[int, RawScalar]:
    """The source text of ``permissions[i].mode`` for every entry whose mode is a scalar.

    Runs after construction, when merge keys (``<<``) have been flattened into the nodes.
    """
    if not isinstance(root, MappingNode):
        return {}
    permissions = _last_value(root, "permissions")
    if not isinstance(permissions, SequenceNode):
        return {}
    modes: dict[int, RawScalar] = {}
    for index, entry in enumerate(permissions.value):
        if not isinstance(entry, MappingNode):
            continue
        mode = _last_value(entry, "mode")
        if isinstance(mode, ScalarNode):
            modes[index] = RawScalar(str(mode.value), mode.tag == _NULL)
    return modes
