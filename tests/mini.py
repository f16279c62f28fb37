"""The tests' one mini claims file (tests/mini_claims.yaml) and the variants tests derive from
it: a test that needs fewer tables or another tolerance takes them from here instead of
keeping a copy of the YAML."""

from __future__ import annotations

import re
from pathlib import Path

MINI_CLAIMS = Path(__file__).parent / "mini_claims.yaml"


def mini_claims_text(*tables: str, tolerance: float | None = None, append: str = "") -> str:
    """The mini claims file without its comment header (so `schema_version` is line 1): only
    the tables named (all, and the relations, when none is), the `tab` table's tolerance set
    to `tolerance` if given, then `append` (e.g. a `references:` block)."""
    lines = [line for line in MINI_CLAIMS.read_text(encoding="utf-8").splitlines(keepends=True)]
    text = "".join(line for line in lines if not line.startswith("#"))
    if tables:
        head, rest = text.split("tables:\n", 1)
        blocks = re.split(r"(?m)^(?=  - id: )", rest.split("relations:\n", 1)[0])
        kept = [b for b in blocks if re.match(r"  - id: (\S+)", b) and b.split()[2] in tables]
        if len(kept) != len(tables):
            raise ValueError(f"mini_claims.yaml has no table among {tables}")
        text = head + "tables:\n" + "".join(kept)
    if tolerance is not None:
        text = text.replace(
            "    tolerance: {abs: 1.0}\n", f"    tolerance: {{abs: {tolerance}}}\n", 1
        )
    return text + append
