"""Links out of the report: only http(s) URLs and DOIs become `href`s, so a claims file
cannot smuggle a `javascript:` or `data:` link into the page. Following a link is the
reader's choice; the page itself fetches nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from audit.claims import LINKS  # the claims loader's own rule: one plain link

_URL, _DOI = LINKS["url"][0], LINKS["doi"][0]


def safe_url(value: Any) -> str:
    """`value` when it is one plain http(s) URL, else ""."""
    text = str(value or "").strip()
    return text if _URL.fullmatch(text) else ""


def doi_url(doi: Any) -> str:
    """https://doi.org/<doi> for a syntactically valid DOI, else ""."""
    text = str(doi or "").strip()
    return f"https://doi.org/{quote(text, safe='/:.;()-_')}" if _DOI.fullmatch(text) else ""
