"""The pagination object every paginated endpoint returns, with canonical relative links."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from legacy_django.common.params import parse_int

DEFAULT_SIZE = 20
MAX_SIZE = 100
MAX_PAGE = 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class PageRequest:
    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def parse_page_request(query: Mapping[str, str]) -> PageRequest:
    return PageRequest(
        page=parse_int(query, "page", default=1, minimum=1, maximum=MAX_PAGE),
        size=parse_int(query, "size", default=DEFAULT_SIZE, minimum=1, maximum=MAX_SIZE),
    )


def pagination(
    path: str, request: PageRequest, total: int, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``next``/``prev`` are relative links with parameters in a fixed order (page, size, then ``extra``)."""
    pages = (total + request.size - 1) // request.size

    def link(page: int) -> str:
        return f"{path}?{urlencode({'page': page, 'size': request.size, **(extra or {})})}"

    return {
        "page": request.page,
        "size": request.size,
        "total": total,
        "pages": pages,
        "next": link(request.page + 1) if request.page < pages else None,
        # Past the end, ``prev`` points at the last page that has items rather than at another empty page.
        "prev": link(min(request.page - 1, max(pages, 1))) if request.page > 1 else None,
    }
