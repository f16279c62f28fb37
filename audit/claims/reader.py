"""The claims file's YAML reader: text -> a tree of `Y` values that keep each value's line
and text as written, with the bounds of `runners.safe_yaml` (no alias bomb, no deep nesting)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audit.errors import AuditError, read_utf8
from runners import safe_yaml

MAX_BYTES = 4 * 2**20  # a claims file of 10,000 claims is about 1 MiB

_TAG = "tag:yaml.org,2002:"
_PLAIN_COLLECTIONS = (_TAG + "map", _TAG + "seq")


# --------------------------------------------------------------------------- YAML nodes


@dataclass
class Y:
    """A YAML value with its source line: a dict[str, Y], a list[Y] or a scalar."""

    value: Any
    line: int
    text: str | None = None  # a scalar's text as written
    quoted: bool = False


class Reader:
    """Turns the node tree of one file into `Y` values; knows the file for error messages."""

    def __init__(self, path: Path):
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()
        self._converted: dict[int, Y] = {}  # an alias is one node: converted once, shared

    def fail(self, line: int, message: str) -> AuditError:
        return AuditError(f"{self.path}:{line}: {message}")

    def load(self) -> Y:
        text = read_utf8(self.path, "the claims file", limit=MAX_BYTES)
        if not text.strip():
            raise AuditError(
                f"{self.path}:1: the claims file is empty; start from the example in docs/claims.md"
            )
        try:
            node = safe_yaml.compose(text)
        except safe_yaml.YamlLimitError as exc:
            raise self.fail(exc.line, f"the claims file is {exc}; write the values out") from None
        except yaml.YAMLError as exc:
            raise self._syntax_error(exc, text) from None
        if node is None:
            raise self.fail(
                1, "the claims file holds only comments; add the blocks of docs/claims.md"
            )
        return self.convert(node)

    def _syntax_error(self, exc: yaml.YAMLError, text: str) -> AuditError:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        lines = text.splitlines()
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        hint = "fix the YAML syntax (docs/claims.md lists common pitfalls)"
        if "\t" in source or "\\t" in str(exc):
            hint = "YAML does not allow tabs for indentation; indent with spaces"
        return self.fail(line, f"malformed YAML ({problem}); {hint}")

    def convert(self, node: yaml.Node) -> Y:
        done = self._converted.get(id(node))
        if done is None:
            done = self._converted[id(node)] = self._convert(node)
        return done

    def _convert(self, node: yaml.Node) -> Y:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTIONS:
            raise self.fail(line, f"unsupported tag {node.tag}; write plain values (no !! tags)")
        if isinstance(node, yaml.MappingNode):
            return Y(self._mapping(node), line)
        if isinstance(node, yaml.SequenceNode):
            return Y([self.convert(n) for n in node.value], line)
        return Y(self._scalar(node), line, text=node.value, quoted=node.style in ("'", '"'))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        # Fast paths for the common tags; YAML 1.1 oddities (1_000, 0x1F, .nan, 1:30)
        # fall through to PyYAML's own constructor.
        tag, text = node.tag, node.value
        try:
            if tag == _TAG + "str":
                return text
            if tag == _TAG + "float":
                return float(text)
            if tag == _TAG + "int":
                return int(text)
        except ValueError:
            pass
        try:
            return self._constructor.construct_object(node)
        except (ValueError, OverflowError):  # e.g. an integer of 5,000 digits
            raise self.fail(
                node.start_mark.line + 1, f"the number {text[:20]}... is too long to read"
            ) from None
        except yaml.YAMLError as exc:  # e.g. a !!python/... tag: never constructed
            raise self.fail(
                node.start_mark.line + 1,
                f"{safe_yaml.problem(exc)}; write plain values (no !! tags)",
            ) from None

    def _mapping(self, node: yaml.MappingNode) -> dict[str, Y]:
        out: dict[str, Y] = {}
        merged: list[Y] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":  # `<<: *anchor` copies an anchored mapping
                merged.append(self.convert(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node.start_mark.line + 1, "a mapping key must be plain text")
            key = key_node.value
            if key in out:
                raise self.fail(
                    key_node.start_mark.line + 1,
                    f"duplicate key {key!r} (first on line {out[key].line}); "
                    "YAML keeps only the last one, so remove or rename one of them",
                )
            out[key] = self.convert(value_node)
        for mapping in merged:  # explicit keys win over merged ones, as YAML specifies
            if not isinstance(mapping.value, dict):
                raise self.fail(mapping.line, "`<<:` must name a mapping (an &anchor)")
            for key, value in mapping.value.items():
                out.setdefault(key, value)
        return out
