"""Operator views answer JSON to tools and an HTML page to a browser: the same document, rendered as tables.

A browser sends `Accept: text/html`; `?format=json` or `?format=html` overrides the negotiation.
"""

import html
from typing import Any

from faust.web import Request, Response, View

STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#111;background:#fff}"
    "table{border-collapse:collapse;margin:.25rem 0}td,th{border:1px solid #bbb;padding:.2rem .5rem;"
    "text-align:left;vertical-align:top}th{background:#eee}nav a{margin-right:1rem}code{font-size:13px}"
)
NAV = (
    ("/feastflow/", "index"),
    ("/feastflow/ready/", "readiness"),
    ("/feastflow/assignment/", "assignment and lag"),
    ("/feastflow/dead-letters/", "dead letters"),
    ("/metrics", "metrics"),
)


def wants_html(request: Request) -> bool:
    chosen = request.query.get("format")
    if chosen in {"json", "html"}:
        return chosen == "html"
    return "text/html" in request.headers.get("Accept", "")  # browsers ask for it; tools and curl do not


def answer(view: View, request: Request, title: str, document: Any, status: int = 200) -> Response:
    if not wants_html(request):
        return view.json(document, status=status)
    nav = "".join(f'<a href="{href}">{html.escape(label)}</a>' for href, label in NAV)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><nav>{nav}</nav><h1>{html.escape(title)}</h1>"
        f"{render(document)}</body></html>"
    )
    return view.html(page, status=status)


def render(value: Any) -> str:
    """A JSON value as HTML: objects as two-column tables, lists of objects as one table, the rest as text."""
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{render(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
            cells = ("".join(f"<td>{render(row.get(c))}</td>" for c in columns) for row in value)
            body = "".join(f"<tr>{row}</tr>" for row in cells)
            return f"<table><tr>{head}</tr>{body}</table>"
        return "<br>".join(render(v) for v in value) or "<em>none</em>"
    if value is None:
        return ""
    return f"<code>{html.escape(str(value))}</code>"
