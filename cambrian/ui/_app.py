"""The live view's web app: static page, JSON API, Host and token checks, and the server."""

from __future__ import annotations

import secrets
from importlib.resources import files as package_files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from cambrian.archive import ArchiveViews
from cambrian.ui._api import RunSource, build_router

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "cambrian_token"
_WILDCARDS = {"0.0.0.0", "::", ""}


def static_dir() -> Path:
    """The folder of the page's own HTML, JS and CSS (shipped as package data)."""
    return Path(str(package_files("cambrian.ui") / "static"))


def resolve_token(host: str, token: str | None) -> str | None:
    """Return the token the server requires: as given, generated off loopback, else None.

    Args:
        host: The address the server binds.
        token: The token the user passed, if any.
    """
    if token:
        return token
    if host in LOOPBACK:
        return None
    return secrets.token_urlsafe(16)


def create_app(
    views: ArchiveViews,
    sources: dict[str, RunSource],
    token: str | None = None,
    host: str | None = None,
) -> FastAPI:
    """Build the web app over an archive.

    Requests whose ``Host`` header names neither a loopback name nor ``host`` are
    refused with 403, so a web page whose own name was rebound to this machine's address
    (DNS rebinding) cannot read the view through the visitor's browser.

    Args:
        views: Read-only queries over the archive database.
        sources: Lineage and config of the runs the caller knows, by run id.
        token: When set, every request needs it (``?token=``, a bearer header or the
            cookie set by the first ``?token=`` visit).
        host: The address the server binds, when the user chose it: its name is accepted
            too. A wildcard (``0.0.0.0``, ``::``) accepts any name; the token guards it.
    """
    app = FastAPI(title="cambrian", docs_url=None, redoc_url=None, openapi_url=None)
    if token:
        _require_token(app, token)
    names = {*LOOPBACK, _host_name(host or "localhost")}
    if not names & _WILDCARDS:
        _require_host(app, names)  # added last, so checked before the token
    app.include_router(build_router(views, sources))
    page = static_dir()
    app.mount("/static", StaticFiles(directory=page), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(page / "index.html", headers={"Cache-Control": "no-store"})

    return app


def _require_token(app: FastAPI, token: str) -> None:
    """Refuse requests without the token; remember it in a cookie after the first visit."""

    @app.middleware("http")
    async def check(request: Request, call_next) -> Response:  # noqa: ANN001 - starlette's
        given = (
            request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse(
                {
                    "detail": "missing or wrong token: open the URL printed by "
                    "`cambrian ui`, which carries ?token=..."
                },
                status_code=401,
            )
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response


def _host_name(host: str) -> str:
    """The name in a ``Host`` header or ``--host`` value, lower case, without port or brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _require_host(app: FastAPI, names: set[str]) -> None:
    """Refuse requests whose ``Host`` header names none of ``names`` (any port)."""

    @app.middleware("http")
    async def check(request: Request, call_next) -> Response:  # noqa: ANN001 - starlette's
        given = request.headers.get("host", "")
        if _host_name(given) not in names:
            return JSONResponse(
                {
                    "detail": f"Host {given!r} is not a name of this server; to serve under "
                    "another name, start `cambrian ui --host` with it"
                },
                status_code=403,
            )
        return await call_next(request)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn until Ctrl-C."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
