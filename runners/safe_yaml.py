"""YAML with bounds: every YAML file the project reads (claims, cluster configs, spec.yaml)
goes through here, so none can exhaust memory, time or the stack.

A YAML alias repeats a node without copying it: a few hundred bytes of nested aliases (a
"billion laughs" bomb, or `<<:` merge keys) stand for billions of values, which any code
that walks the data then expands. So the node graph is composed first (linear in the text),
measured without expanding it, and refused when its expanded size or its depth exceeds the
limits below; only then is it constructed. Tags outside YAML's safe schema (`!!python/...`)
are refused by the safe constructor.

This module never imports torch (nor audit: runners never do).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 50  # nesting of mappings and lists; real files use fewer than 10
MAX_VALUES = 2_000_000  # values once aliases are expanded; the claims file has ~20,000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class YamlLimitError(ValueError):
    """A YAML document beyond the limits (too deep, too many values once expanded)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line  # 1-based line of the node where the limit was passed


def compose(text: str) -> yaml.Node | None:
    """The node graph of the single document in `text`, checked against the limits.

    Raises yaml.YAMLError for malformed YAML (with a problem_mark) and YamlLimitError."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except RecursionError:  # the pure-Python composer, on deep nesting
        raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep", 1) from None
    if node is not None:
        check_limits(node)
    return node


def check_limits(root: yaml.Node) -> None:
    """Depth and expanded size of the graph under `root`, computed once per distinct node
    (an alias is a shared node), so a bomb costs as little to measure as to compose."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_DEPTH:
            raise YamlLimitError(
                f"nested more than {MAX_DEPTH} levels deep", node.start_mark.line + 1
            )
        children = _children(node)
        if children_done:
            total = 1 + sum(size[id(child)] for child in children)
            if total > MAX_VALUES:
                raise YamlLimitError(
                    f"holds more than {MAX_VALUES:,} values once its aliases are expanded "
                    "(an alias bomb?)",
                    node.start_mark.line + 1,
                )
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load(text: str) -> Any:
    """`yaml.safe_load(text)` within the limits (YamlLimitError, yaml.YAMLError)."""
    node = compose(text)
    if node is None:
        return None
    try:
        return yaml.constructor.SafeConstructor().construct_document(node)
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
        raise YamlLimitError(f"a value cannot be read: {str(exc)[:100]}", 1) from None


def error_line(exc: BaseException) -> int:
    """The 1-based line a YAML or limit error points at (1 when it names none)."""
    if isinstance(exc, YamlLimitError):
        return exc.line
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def problem(exc: BaseException) -> str:
    """The problem an error states, without PyYAML's `in "<unicode string>"` location."""
    if isinstance(exc, YamlLimitError):
        return str(exc)
    text = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{context}: {text}" if context and "tag" in text else text
