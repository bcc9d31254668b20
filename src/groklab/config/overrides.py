"""Reading spec files and applying command-line overrides to raw spec data (before validation)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from groklab.errors import SpecError

MAX_NODES = 100_000
"""The most values a YAML document may stand for, each alias counted every time it is used: a spec is a page of
keys, while a few anchors can stand for 10^9 values (the "billion laughs"), which hang whatever walks them."""
MAX_DEPTH = 100
"""The deepest nesting a YAML document may have."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with duplicate keys an error (the last one would win silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, source: str = "spec") -> Any:
    """A YAML document as data, or SpecError when it nests deeper than MAX_DEPTH or stands for more than MAX_NODES
    values: checked on the composed document, before anything is built from it. Malformed YAML and duplicate keys
    raise yaml.YAMLError."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        values, depth = _size(node, {})
        if depth > MAX_DEPTH:
            raise SpecError(f"{source}: nested {depth} levels deep; at most {MAX_DEPTH}")
        if values > MAX_NODES:
            raise SpecError(f"{source}: stands for {values:,} values (its aliases expanded); at most {MAX_NODES:,}")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _size(node: yaml.Node, known: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of a composed node, each alias (a shared node) counted at every use, computed once each."""
    if id(node) not in known:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [_size(child, known) for child in children]
        known[id(node)] = (1 + sum(v for v, _ in sizes), 1 + max((d for _, d in sizes), default=0))
    return known[id(node)]


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML spec file, raising SpecError for a missing or malformed file."""
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file (give a YAML path or a built-in name: groklab list)")
    try:
        data = read_yaml(path.read_text(), str(path))
    except SpecError:
        raise
    except (UnicodeDecodeError, ValueError):
        raise SpecError(f"{path}: not a text file; a spec is a YAML file") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    if data is None:
        raise SpecError(f"{path}: an empty spec; write at least a name and the keys to change (see docs/spec.md)")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping (name, task, model, optimizer, train, seeds, sweep)")
    return data


def parse_scalar(text: str) -> Any:
    """Parse a command-line value as a YAML scalar (0.01 -> float, true -> bool, [0.9, 0.98] -> list)."""
    try:
        return read_yaml(text, f"the value {text[:40]!r}")
    except yaml.YAMLError:
        return text


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data['a']['b'] = value for key 'a.b' (creating mappings on the way)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            if not isinstance(child, dict):
                raise SpecError(f"{key}: {part} is not a mapping")
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(
    data: dict[str, Any], sets: list[str] | None = None, sweeps: list[str] | None = None
) -> dict[str, Any]:
    """Apply `--set KEY=VALUE` and `--sweep KEY=V1,V2` to raw spec data (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in sets or []:
        key, value = _split_assignment(item, "--set")
        set_dotted(data, key, parse_scalar(value))
    for item in sweeps or []:
        key, values = _split_assignment(item, "--sweep")
        sweep = data.setdefault("sweep", {}) or {}
        if not isinstance(sweep, dict):
            raise SpecError("sweep: must be a mapping of dotted key -> list of values")
        sweep[key] = [parse_scalar(v) for v in _split_values(values)]
        data["sweep"] = sweep
    return data


def _split_assignment(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"{flag} {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01")
    return key.strip(), value.strip()


def _split_values(text: str) -> list[str]:
    """Split V1,V2,... on commas outside brackets, so betas=[0.9,0.98],[0.9,0.999] works."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values if v.strip()]
