"""Escaping untrusted text (run-directory names, CSV cells, reasons, log tails) for each sink
it reaches: the terminal, markdown, and XML 1.0 (JUnit). HTML is Jinja's autoescape
(audit/report/render.py).

Each function makes the text inert in its sink and keeps it readable: a control character
becomes a visible escape such as `\\x1b`, never a deleted byte, so what a user sees still
says what the file held.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode bidi controls that reorder what a terminal shows
# (the "Trojan Source" characters): none may reach a sink raw.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}]")
# Characters XML 1.0 forbids even as references (everything outside its Char production).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]!~|#])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: object, *, keep_newlines: bool = False) -> str:
    """`text` safe to print: controls and escape sequences shown as `\\x1b`, never executed.

    Without `keep_newlines` the result is one line (a newline shows as `\\x0a`)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_visible, str(text))


def one_line(text: object) -> str:
    """A message as one terminal line: its lines joined with " | ", controls made visible."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return terminal(" | ".join(lines))


def markdown(text: object) -> str:
    """`text` as plain words in a markdown table cell: no HTML, no link, no formatting, no
    cell break; newlines become spaces."""
    flat = " ".join(str(text).split())
    out = "".join(_HTML.get(c, c) for c in terminal(flat))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", out)


def xml(text: object) -> str:
    """`text` with the characters XML 1.0 cannot hold (NUL, ESC, ...) made visible; escape
    markup afterwards (xml.sax.saxutils.escape / quoteattr)."""
    return _NOT_XML.sub(_visible, str(text))
