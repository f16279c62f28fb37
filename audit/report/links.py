"""Links out of the report: only http(s) URLs and DOIs become `href`s, so a claims file
cannot smuggle a `javascript:` or `data:` link into the page. Following a link is the
reader's choice; the page itself fetches nothing."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f<>\"'`]+")
_DOI = re.compile(r"10\.\d{4,9}/[^\s\x00-\x1f\x7f<>\"'`]+")


def safe_url(value: Any) -> str:
    """`value` when it is one plain http(s) URL, else ""."""
    text = str(value or "").strip()
    return text if _URL.fullmatch(text) else ""


def doi_url(doi: Any) -> str:
    """https://doi.org/<doi> for a syntactically valid DOI, else ""."""
    text = str(doi or "").strip()
    return f"https://doi.org/{quote(text, safe='/:.;()-_')}" if _DOI.fullmatch(text) else ""
