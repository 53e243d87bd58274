"""``/docs``: interactive API docs, Swagger UI over this server's own ``/openapi.json``.

Swagger UI (the npm package ``swagger-ui-dist``, Apache-2.0, its licence and
notice beside it) is vendored in the package under ``static/swagger-ui``, so
the page works without the internet and loads nothing from anywhere but
this server: its Content-Security-Policy allows this origin only (and
``data:`` images, which Swagger UI's stylesheet inlines). The page and its
files are routes of the table like any other, open to anyone like
``/openapi.json``; so, unlike FastAPI's, they are operations of the
document too, and the table and the document stay one URL space.

The vendored files are swagger-ui-dist 5.35.0's ``swagger-ui-bundle.js``,
``swagger-ui.css`` and their licences, copied unchanged from
``npm pack swagger-ui-dist``; ``docs.html`` and ``docs.js`` are ours.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

from aimass.http.errors import Protocol
from aimass.http.routes import Answer, Param, Params, Route

__all__ = ["ApiDocs"]

_JS = "text/javascript; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
# The name each file is served under: where it is in static/, and its media type.
_ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", _JS),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    "docs.js": ("docs.js", _JS),
    "LICENSE": ("swagger-ui/LICENSE", _TEXT),
    "NOTICE": ("swagger-ui/NOTICE", _TEXT),
    "swagger-ui-bundle.js.LICENSE.txt": ("swagger-ui/swagger-ui-bundle.js.LICENSE.txt", _TEXT),
}
_PAGE = "docs.html"
_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # Swagger UI sets style attributes as it renders
        "img-src 'self' data:",
        "connect-src 'self'",  # the document, and "Try it out" requests to this server
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# The files change only with the package; a day's caching spares reloading 2 MB.
_CACHE = "public, max-age=86400"


class ApiDocs:
    """The ``/docs`` page and its files, read from the package once each, on first use."""

    def __init__(self) -> None:
        self._static = files("aimass.server") / "static"
        self._read: dict[str, bytes] = {}

    def routes(self) -> list[Route]:
        """The page and its files, open to anyone."""
        text = {"type": "string"}
        return [
            Route(
                "GET",
                "/docs",
                "docs",
                "Interactive API docs (Swagger UI) of this document",
                self.page,
                None,
                Protocol.OIP,
                answers=(Answer(200, "the docs page", {"text/html": text}),),
            ),
            Route(
                "GET",
                "/docs/{asset}",
                "docs_asset",
                "A file of the docs page (Swagger UI, its licence)",
                self.asset,
                None,
                Protocol.OIP,
                params=(Param.string("asset", choices=tuple(_ASSETS)),),
                answers=(
                    Answer(
                        200,
                        "the file",
                        {"text/javascript": text, "text/css": text, "text/plain": text},
                    ),
                ),
            ),
        ]

    def _file(self, path: str) -> bytes:
        found = self._read.get(path)
        if found is None:
            found = self._read[path] = self._static.joinpath(*path.split("/")).read_bytes()
        return found

    async def page(self, request: Request, params: Params) -> Response:
        """``GET /docs``: the page, allowed to load from this server only."""
        return Response(
            self._file(_PAGE),
            media_type="text/html; charset=utf-8",
            headers={"content-security-policy": _CSP, "x-content-type-options": "nosniff"},
        )

    async def asset(self, request: Request, params: Params) -> Response:
        """``GET /docs/{asset}``: one of the page's files."""
        path, media_type = _ASSETS[params["asset"]]
        return Response(
            self._file(path),
            media_type=media_type,
            headers={"cache-control": _CACHE, "x-content-type-options": "nosniff"},
        )
