"""Rendering: the jinja2 environment (autoescaping on; every value made safe for HTML text
and attributes), the HTML page, one partial for golden tests, and the PDF.

Untrusted text (run ids, CSV cells, paths, log lines, claim notes) reaches the page only
through `clean_text`: markup is escaped by jinja2, NUL and other control characters become
U+FFFD, and bidirectional formatting characters (which can make "evil.exe‮fdp.txt" read as
something else) are shown as their code points instead of being obeyed. The page's CSS
isolates inline fields (`unicode-bidi: isolate`), so right-to-left text cannot reorder the
words around it."""

from __future__ import annotations

import re
from typing import Any

import jinja2
from markupsafe import Markup

from audit import project_file
from audit.report.vocabulary import css_rules, verdict_label

TEMPLATES_DIR = project_file("templates")  # the checkout's, or the wheel's copy
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: Any) -> Any:
    """Every value a template prints passes here (jinja2 `finalize`); Markup is trusted."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    value = _CONTROL.sub("\ufffd", value)
    return _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", value)


def template_environment() -> jinja2.Environment:
    """Autoescaping on for every template: escaping is the default, `|safe` the exception."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=clean_text,
    )
    env.filters["verdict_label"] = verdict_label
    env.globals["verdict_css"] = css_rules
    return env


def render_html(model: dict[str, Any]) -> str:
    return template_environment().get_template("report.html.j2").render(model)


def render_fragment(template: str, model: dict[str, Any]) -> str:
    """One partial (e.g. "partials/table1.html.j2"), for golden tests of stable fragments."""
    return template_environment().get_template(template).render(model)


def pdf_bytes(html: str) -> bytes:
    """WeasyPrint's rendering of the HTML, fetching nothing but inline `data:` URLs: any
    other reference is refused (and skipped with a warning) rather than requested."""
    import weasyprint  # slow to import; only needed when a PDF is asked for
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
