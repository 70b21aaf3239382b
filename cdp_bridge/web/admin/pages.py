"""What every back office page shares: rendering, and the pager's page number and links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, render_template, request, url_for

#: The last page a pager links to: beyond it an offset would only read nothing.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Pager:
    """Where the previous and next pages are; only the arguments the view names are kept."""

    page: int
    has_next: bool
    endpoint: str
    arguments: dict[str, Any]

    def url(self, page: int) -> str:
        return url_for(self.endpoint, page=page, **self.arguments)


def page_number() -> int:
    """``?page=``, clamped to 1…MAX_PAGE; anything that is not a number is page 1."""
    text = request.args.get("page", "1")
    if not text.isdecimal():
        return 1
    if len(text) > len(str(MAX_PAGE)):  # also keeps int() from huge digit strings
        return MAX_PAGE
    return min(MAX_PAGE, max(1, int(text)))


def show(template: str, http_status: int = 200, /, **context: object) -> Response:
    """A rendered page. Text stored before lone surrogates were refused still renders,
    escaped (``\\ud800``), instead of failing the page."""
    html = render_template(template, **context)
    return Response(html.encode("utf-8", "backslashreplace"), http_status, mimetype="text/html")
