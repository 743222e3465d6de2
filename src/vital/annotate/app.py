"""The web app: server-rendered pages, a JSON API, images by figure id.

Security model, in one place:

* every route except ``/login`` and the static assets needs a session cookie
  (HTTP-only, SameSite=Lax, Secure over HTTPS); API routes answer 401 without
  one, pages show how to sign in;
* every state-changing request must carry the session's CSRF token (readable
  by the page as the ``csrf_token`` cookie) in the ``X-CSRF-Token`` header,
  else 403;
* an annotator reaches only their own tasks: another annotator's task id is
  a 404, exactly like an unknown one;
* images are looked up by figure id in the loaded corpus; no part of a request
  is ever used as a file path;
* pages forbid inline scripts and framing (Content-Security-Policy) and send
  no Referer.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from vital.annotate.agreement import agreement_report
from vital.annotate.auth import Annotator, end_session, redeem_login_token, session_annotator
from vital.annotate.db import KINDS, AnnotationDB, FigureRow
from vital.annotate.images import DEFAULT_WINDOW, browser_image
from vital.annotate.tasks import (
    InvalidAnswer,
    TaskNotFound,
    annotator_progress,
    item_progress,
    next_task,
    progress,
    submit_answer,
    task_view,
)
from vital.figures.images import ImageError

SESSION_COOKIE = "vital_session"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
HERE = Path(__file__).parent
SIGN_IN = (
    "Not signed in: open the one-time login link your administrator gave you. "
    "If it was already used, ask for a new one (vital annotate add-user NAME)."
)
KIND_TITLES = {"demos": "Choose demonstrations", "compare": "Compare candidates"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger("vital.annotate")


class NotSignedIn(Exception):
    pass


@dataclass(frozen=True)
class Visitor:
    annotator: Annotator
    csrf_token: str
    session_token: str


class RedactTokens(logging.Filter):
    """Removes login tokens from log records (uvicorn's access log prints query strings)."""

    pattern = re.compile(r"(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.pattern.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.pattern.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response (images and assets may be cached)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(("/static/", "/images/"))

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers and not (cacheable and name == "Cache-Control"):
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


_REDACT = RedactTokens()


def redact_tokens_in_server_logs() -> None:
    """Put the token filter on uvicorn's loggers (again after uvicorn configures logging: idempotent)."""
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(_REDACT)


def create_app(db: AnnotationDB, *, overlap: int = 1) -> FastAPI:
    """The annotation app over ``db``; each item goes to ``overlap`` different annotators."""
    if overlap < 1:
        raise ValueError("overlap must be at least 1")
    redact_tokens_in_server_logs()
    app = FastAPI(title="vital annotate", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    app.add_middleware(SecurityHeaders)

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def problem(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
        """JSON ``{"detail": ...}`` for the API, a readable page otherwise."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status, headers=extra.get("headers"))
        context = {"title": title, "message": message, "back": extra.get("back")}
        return page(request, "message.html", context, status_code=status)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        return problem(request, 401, "Please sign in", SIGN_IN)

    @app.exception_handler(TaskNotFound)
    async def task_not_found(request: Request, exc: TaskNotFound) -> Response:
        return problem(request, 404, "Not found", str(exc), back="/")

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(request, exc.status_code, "Sorry", str(exc.detail), headers=exc.headers, back="/")

    @app.exception_handler(InvalidAnswer)
    async def invalid_answer(_request: Request, exc: InvalidAnswer) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def visitor(request: Request) -> Visitor:
        session_token = request.cookies.get(SESSION_COOKIE)
        found = session_annotator(db, session_token)
        if found is None:
            raise NotSignedIn()
        return Visitor(found[0], found[1], session_token)

    def csrf_checked(request: Request, who: Visitor = Depends(visitor)) -> Visitor:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), who.csrf_token.encode()):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        return who

    def admin_only(who: Visitor = Depends(visitor)) -> Visitor:
        if not who.annotator.is_admin:
            raise HTTPException(403, "administrators only")
        return who

    def progress_of(who: Visitor) -> dict[str, Any]:
        return {
            kind: vars(p) | {"remaining": p.remaining}
            for kind, p in progress(db, who.annotator, overlap=overlap).items()
        }

    # ---- signing in and out -------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login(request: Request, token: str = "") -> Response:
        if not token:
            return problem(request, 401, "Please sign in", SIGN_IN)
        opened = redeem_login_token(db, token)
        if opened is None:
            return problem(
                request,
                403,
                "This login link does not work",
                "It was already used, has expired, or was mistyped. Ask your administrator for a "
                "new one (vital annotate add-user NAME).",
            )
        log.info("%s signed in", opened.annotator.name)
        response = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https"
        for name, value, http_only, same_site in [
            (SESSION_COOKIE, opened.token, True, "lax"),
            (CSRF_COOKIE, opened.csrf_token, False, "strict"),  # the page's script reads this one
        ]:
            response.set_cookie(
                name,
                value,
                max_age=opened.max_age,
                httponly=http_only,
                samesite=same_site,
                secure=secure,
                path="/",
            )
        return response

    @app.post("/logout")
    def logout(who: Visitor = Depends(csrf_checked)) -> Response:
        end_session(db, who.session_token)
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    # ---- pages ------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, who: Visitor = Depends(visitor)) -> Response:
        return page(request, "home.html", {"user": who.annotator, "progress": progress_of(who), "kinds": KIND_TITLES})

    @app.get("/annotate/{kind}")
    def annotate_next(request: Request, kind: str, who: Visitor = Depends(visitor)) -> Response:
        if kind not in KINDS:
            raise HTTPException(404, f"unknown task kind {kind!r}")
        task_id = next_task(db, who.annotator, kind, overlap=overlap)
        if task_id is None:
            return page(
                request,
                "message.html",
                {
                    "user": who.annotator,
                    "title": "All done",
                    "message": f"Nothing is left to do in “{KIND_TITLES[kind]}”. Thank you!",
                    "back": "/",
                },
            )
        return RedirectResponse(f"/tasks/{task_id}", status_code=303)

    @app.get("/tasks/{task_id}", response_class=HTMLResponse)
    def task_page(request: Request, task_id: int, who: Visitor = Depends(visitor)) -> Response:
        view = task_view(db, who.annotator, task_id)
        mine = progress_of(who)[view["kind"]]
        return page(
            request,
            "task.html",
            {
                "user": who.annotator,
                "task": view,
                "title": KIND_TITLES[view["kind"]],
                "progress": mine,
                "letters": "AB" if view["kind"] == "compare" else "1234",
            },
        )

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request, who: Visitor = Depends(admin_only)) -> Response:
        return page(
            request,
            "admin.html",
            {
                "user": who.annotator,
                "report": agreement_report(db),
                "items": item_progress(db, overlap=overlap),
                "annotators": annotator_progress(db),
            },
        )

    # ---- images ----------------------------------------------------------------------------------------

    @app.get("/images/{figure_id:path}")
    def image(figure_id: str, window: str = DEFAULT_WINDOW, _who: Visitor = Depends(visitor)) -> Response:
        with db.read() as session:
            figure = session.get(FigureRow, figure_id)
        if figure is None or not figure.image:
            raise HTTPException(404, "no image for this figure")
        try:
            body, media_type = browser_image(figure.image, window)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(404, f"image not available: {exc}") from None
        headers = {"Cache-Control": "private, max-age=3600"}
        if isinstance(body, Path):
            return FileResponse(body, media_type=media_type, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    # ---- JSON API --------------------------------------------------------------------------------------

    @app.get("/api/me")
    def me(who: Visitor = Depends(visitor)) -> dict[str, Any]:
        return {"name": who.annotator.name, "admin": who.annotator.is_admin, "progress": progress_of(who)}

    @app.get("/api/tasks/next")
    def api_next(kind: str = Query(..., pattern="^(compare|demos)$"), who: Visitor = Depends(visitor)) -> Response:
        task_id = next_task(db, who.annotator, kind, overlap=overlap)
        if task_id is None:
            return Response(status_code=204)
        return JSONResponse(task_view(db, who.annotator, task_id))

    @app.get("/api/tasks/{task_id}")
    def api_task(task_id: int, who: Visitor = Depends(visitor)) -> dict[str, Any]:
        return task_view(db, who.annotator, task_id)

    @app.post("/api/tasks/{task_id}/answer")
    def api_answer(task_id: int, payload: Any = Body(...), who: Visitor = Depends(csrf_checked)) -> Any:
        return submit_answer(db, who.annotator, task_id, payload)

    @app.get("/api/admin/stats")
    def api_stats(_who: Visitor = Depends(admin_only)) -> dict[str, Any]:
        return {
            "items": item_progress(db, overlap=overlap),
            "annotators": annotator_progress(db),
            **agreement_report(db).to_json_dict(),
        }

    return app
