"""The annotation page: a small Starlette app over a `Session`, served by uvicorn.

Routes: `/` the page (plain HTML, CSS and JS, no build step), `/api/next`, `/api/answer`,
`/api/undo`, and `/img/ITEM/rec|ori`, which serves an item's PNG by looking its id up in the
sitting: no part of a request ever becomes a file path, so nothing outside the run
directories' pairs can be read (and a class-mode item's original, which would give the answer
away, is not served at all). Every request body is JSON of at most `MAX_BODY` bytes; the host
header must name this machine (a web page elsewhere cannot reach the server through DNS
rebinding) and POSTs must be `application/json` (a cross-site form cannot post answers).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flaudit.errors import FlauditError
from semsim.annotate.items import shortcut_keys
from semsim.annotate.session import AnswerError, Progress, Session, Shown

#: The largest request body accepted (an answer is about 200 bytes).
MAX_BODY = 4096
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/app.css": ("app.css", "text/css; charset=utf-8")}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(session: Session, *, allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES) -> Starlette:
    """The page and its API over `session`.

    Args:
        session: the sitting.
        allowed_hosts: host names a request may address ("*": any, for a server meant to be reached from elsewhere).
    """
    pages = {path: (resources.files("semsim.annotate").joinpath("static", name).read_bytes(), kind)
             for path, (name, kind) in _STATIC.items()}

    def static(request: Request) -> Response:
        body, kind = pages[request.url.path]
        return Response(body, media_type=kind, headers={**_HEADERS, "Cache-Control": "no-cache"})

    async def next_item(request: Request) -> Response:
        annotator = request.query_params.get("annotator", "")
        shown = await run_in_threadpool(session.next, annotator)
        return _json({"item": _describe(shown) if shown else None,
                      "progress": _progress(await run_in_threadpool(session.progress, annotator))})

    async def answer(request: Request) -> Response:
        body = await _read_json(request)
        annotator = body.get("annotator")
        stored = await run_in_threadpool(session.submit, annotator, body.get("item"), body.get("choice"), body.get("latency_ms"))
        return _json({"stored": {"item": body["item"], "choice": stored.choice, "time": stored.time},
                      "progress": _progress(await run_in_threadpool(session.progress, annotator))})

    async def undo(request: Request) -> Response:
        body = await _read_json(request)
        annotator = body.get("annotator")
        shown = await run_in_threadpool(session.undo, annotator)
        return _json({"undone": shown.id if shown else None, "progress": _progress(await run_in_threadpool(session.progress, annotator))})

    def image(request: Request) -> Response:
        shown = session.shown.get(request.path_params["item"])
        which = request.path_params["which"]
        if shown is None or which not in ("rec", "ori") or (which == "ori" and shown.item.mode != "pair"):
            return _error("no such image", 404)
        path = shown.item.reconstruction if which == "rec" else shown.item.original
        try:
            body = path.read_bytes()
        except OSError:
            return _error(f"{path.name} is no longer readable", 410)
        # An item's id holds the digest of its images: the same URL is always the same picture.
        return Response(body, media_type="image/png", headers={**_HEADERS, "Cache-Control": "private, max-age=86400, immutable"})

    routes = [Route(path, static) for path in _STATIC] + [
        Route("/api/next", _guarded(next_item), methods=["GET"]),
        Route("/api/answer", _guarded(answer), methods=["POST"]),
        Route("/api/undo", _guarded(undo), methods=["POST"]),
        Route("/img/{item}/{which}", image, methods=["GET"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])
    app.state.session = session
    return app


def check_host(host: str, *, allow_remote: bool) -> tuple[str, ...]:
    """The host names requests may use when serving on `host`.

    Raises:
        FlauditError: `host` is not a loopback address and `allow_remote` was not given.
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return LOOPBACK_NAMES
    if not allow_remote:
        raise FlauditError(
            f"--host {host}: not a loopback address, so anyone who can reach this machine could read the images and "
            "write answers; pass --allow-remote as well to serve on it anyway"
        )
    return ("*",)


def serve(session: Session, *, host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False) -> None:
    """Serve the page until interrupted (Ctrl-C)."""
    import uvicorn

    allowed = check_host(host, allow_remote=allow_remote)
    config = uvicorn.Config(create_app(session, allowed_hosts=allowed), host=host, port=port, log_level="warning", ws="none",
                            access_log=False, limit_concurrency=64)
    print(f"annotating {len(session.shown)} items, each by {session.capacity} people: open http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.Server(config).run()


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` with refused requests answered as JSON errors (4xx), nothing stored."""

    async def call(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AnswerError as err:
            return _error(str(err), err.status)

    return call


async def _read_json(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise AnswerError("send the answer as application/json", 415)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise AnswerError(f"request body over {MAX_BODY} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise AnswerError(f"request body over {MAX_BODY} bytes", 413)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AnswerError("the body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise AnswerError("the body must be a JSON object", 400)
    return data


def _describe(shown: Shown) -> dict[str, Any]:
    item = shown.item
    choices = item.choices(shown.source.class_names)
    images = {"rec": f"/img/{shown.id}/rec"} | ({"ori": f"/img/{shown.id}/ori"} if item.mode == "pair" else {})
    return {
        # Not the run's name: a variant called "noise-0.1" would tell the person what to expect.
        "id": shown.id, "mode": item.mode,
        "choices": [{"value": c.value, "label": c.label, "key": key} for c, key in zip(choices, shortcut_keys(choices), strict=True)],
        "images": images,
    }


def _progress(progress: Progress) -> dict[str, int]:
    return {"done": progress.done, "total": progress.total, "complete": progress.complete, "items": progress.items}


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers={**_HEADERS, "Cache-Control": "no-store"})


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)
