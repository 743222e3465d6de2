"""The web app: server-rendered pages, a JSON API, images by figure id.

Security model, in one place:

* a request body over ``ServeConfig.max_body`` is refused (413) before it is
  read, and a body is parsed only after the session and the CSRF token are
  checked (:mod:`vital.annotate.middleware`, :func:`create_app`'s ``json_body``);
* every route except ``/login`` and the static assets needs a session cookie
  (HTTP-only, SameSite=Lax, Secure over HTTPS or with ``secure_cookies``);
  API routes answer 401 without one, pages show how to sign in;
* every state-changing request is a POST that must carry the session's CSRF
  token (readable by the page as the ``csrf_token`` cookie) in the
  ``X-CSRF-Token`` header, else 403; no GET changes anything (handing out a
  task is ``POST /api/tasks/next``), so a link from another site cannot;
* a login link opened while someone else is signed in asks before switching;
* an annotator reaches only their own tasks: another annotator's task id, or
  a number no task can have, is a 404 exactly like an unknown one;
* images are looked up by figure id, only for figures of the annotator's own
  tasks (administrators: all), and only inside the image folders recorded at
  loading, with symlinks resolved; no part of a request is used as a path;
* pages forbid inline scripts and framing (Content-Security-Policy) and send
  no Referer.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from vital.annotate.agreement import agreement_report
from vital.annotate.auth import (
    Annotator,
    LoginSession,
    end_session,
    login_token_owner,
    redeem_login_token,
    session_annotator,
)
from vital.annotate.config import ServeConfig
from vital.annotate.db import KINDS, AnnotationDB, Database
from vital.annotate.images import DEFAULT_WINDOW, browser_image
from vital.annotate.loading import warn_if_not_ready
from vital.annotate.middleware import BodyLimit, SecurityHeaders, redact_tokens_in_server_logs
from vital.annotate.tasks import (
    InvalidAnswer,
    TaskNotFound,
    annotator_progress,
    figure_image,
    item_progress,
    next_task,
    pending_task,
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
LINK_REFUSED = (
    "It was already used, has expired, or was mistyped. Ask your administrator for a "
    "new one (vital annotate add-user NAME)."
)
KIND_TITLES = {"demos": "Choose demonstrations", "compare": "Compare candidates"}
log = logging.getLogger("vital.annotate")


class NotSignedIn(Exception):
    pass


@dataclass(frozen=True)
class Visitor:
    annotator: Annotator
    csrf_token: str
    session_token: str


def create_app(db: Database, config: ServeConfig | None = None) -> FastAPI:
    """The annotation app over ``db`` (an open database, a SQLite file or a URL), as ``config`` says."""
    config = config or ServeConfig()
    db = db if isinstance(db, AnnotationDB) else AnnotationDB(db)
    overlap = config.overlap
    redact_tokens_in_server_logs()
    app = FastAPI(title="vital annotate", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    app.add_middleware(BodyLimit, max_body=config.max_body)
    app.add_middleware(SecurityHeaders)  # added last, so it also marks BodyLimit's refusals

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def problem(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
        """JSON ``{"detail": ...}`` for the API and the pages' POSTs, a readable page otherwise."""
        if request.url.path.startswith("/api/") or request.method not in ("GET", "HEAD"):
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

    def signed_in(request: Request) -> Visitor | None:
        session_token = request.cookies.get(SESSION_COOKIE)
        found = session_annotator(db, session_token)
        if session_token is None or found is None:
            return None
        return Visitor(found[0], found[1], session_token)

    def visitor(request: Request) -> Visitor:
        who = signed_in(request)
        if who is None:
            raise NotSignedIn()
        return who

    def csrf_checked(request: Request, who: Visitor = Depends(visitor)) -> Visitor:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), who.csrf_token.encode()):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        return who

    async def json_body(request: Request, _who: Visitor = Depends(csrf_checked)) -> Any:
        """The request's JSON body, read only after the session and the CSRF token passed."""
        try:
            return json.loads(await request.body())
        except ValueError:
            raise HTTPException(422, "the request body must be JSON") from None

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

    def open_session(
        request: Request, token: str, current: Visitor | None, respond: Callable[[LoginSession], Response]
    ) -> Response:
        """Spend the login token, end the browser's current session, and set the new session's cookies."""
        opened = redeem_login_token(db, token)
        if opened is None:
            return problem(request, 403, "This login link does not work", LINK_REFUSED)
        if current is not None:
            end_session(db, current.session_token)
        log.info("%s signed in", opened.annotator.name)
        response = respond(opened)
        secure = config.secure_cookies or request.url.scheme == "https"
        cookies: list[tuple[str, str, bool, Literal["lax", "strict"]]] = [
            (SESSION_COOKIE, opened.token, True, "lax"),
            (CSRF_COOKIE, opened.csrf_token, False, "strict"),  # the page's script reads this one
        ]
        for name, value, http_only, same_site in cookies:
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

    @app.get("/login", response_class=HTMLResponse)
    def login(request: Request, token: str = "") -> Response:
        if not token:
            return problem(request, 401, "Please sign in", SIGN_IN)
        owner = login_token_owner(db, token)
        if owner is None:
            return problem(request, 403, "This login link does not work", LINK_REFUSED)
        current = signed_in(request)
        if current is not None and current.annotator.id != owner.id:
            # someone else is signed in here: ask, and spend the link only if they confirm
            return page(request, "switch.html", {"user": current.annotator, "owner": owner, "token": token})
        return open_session(request, token, current, lambda _opened: RedirectResponse("/", status_code=303))

    @app.post("/login")
    def switch_user(request: Request, body: Any = Depends(json_body), who: Visitor = Depends(csrf_checked)) -> Response:
        """The confirmed switch from the signed-in annotator to the owner of a login link."""
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise HTTPException(422, 'expected {"token": "..."}')
        return open_session(request, token, who, lambda opened: JSONResponse({"name": opened.annotator.name}))

    @app.post("/logout")
    def logout(request: Request, who: Visitor = Depends(csrf_checked)) -> Response:
        end_session(db, who.session_token)
        response = JSONResponse({"signed_out": True})
        secure = config.secure_cookies or request.url.scheme == "https"
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True)
        response.delete_cookie(CSRF_COOKIE, path="/", secure=secure)
        return response

    # ---- pages ------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, who: Visitor = Depends(visitor)) -> Response:
        return page(request, "home.html", {"user": who.annotator, "progress": progress_of(who), "kinds": KIND_TITLES})

    @app.get("/annotate/{kind}")
    def annotate_kind(request: Request, kind: str, who: Visitor = Depends(visitor)) -> Response:
        """The annotator's open task of ``kind``, else a page to start one (starting is a POST)."""
        if kind not in KINDS:
            raise HTTPException(404, f"unknown task kind {kind!r}")
        task_id = pending_task(db, who.annotator, kind)
        if task_id is not None:
            return RedirectResponse(f"/tasks/{task_id}", status_code=303)
        left = progress_of(who)[kind]["available"]
        message = (
            f"{left} left to do in “{KIND_TITLES[kind]}”." if left
            else f"Nothing is left to do in “{KIND_TITLES[kind]}”. Thank you!"
        )
        context = {
            "user": who.annotator,
            "title": KIND_TITLES[kind] if left else "All done",
            "message": message,
            "start": kind if left else None,
            "back": "/",
        }
        return page(request, "message.html", context)

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
    def image(figure_id: str, window: str = DEFAULT_WINDOW, who: Visitor = Depends(visitor)) -> Response:
        path = figure_image(db, who.annotator, figure_id)
        if path is None:
            raise HTTPException(404, "no image for this figure")
        try:
            body, media_type = browser_image(str(path), window)
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

    @app.post("/api/tasks/next")
    def api_next(
        kind: str = Query(..., pattern="^(compare|demos)$"), who: Visitor = Depends(csrf_checked)
    ) -> Response:
        task_id = next_task(db, who.annotator, kind, overlap=overlap)
        if task_id is None:
            return Response(status_code=204)
        return JSONResponse(task_view(db, who.annotator, task_id))

    @app.get("/api/tasks/{task_id}")
    def api_task(task_id: int, who: Visitor = Depends(visitor)) -> dict[str, Any]:
        return task_view(db, who.annotator, task_id)

    @app.post("/api/tasks/{task_id}/answer")
    def api_answer(task_id: int, payload: Any = Depends(json_body), who: Visitor = Depends(csrf_checked)) -> Any:
        return submit_answer(db, who.annotator, task_id, payload)

    @app.get("/api/admin/stats")
    def api_stats(_who: Visitor = Depends(admin_only)) -> dict[str, Any]:
        return {
            "items": item_progress(db, overlap=overlap),
            "annotators": annotator_progress(db),
            **agreement_report(db).to_json_dict(),
        }

    return app


def serve(db: Database, config: ServeConfig | None = None) -> None:
    """Run the app under uvicorn on ``config.host:config.port`` until interrupted (warning first when the
    database has nothing to show)."""
    import uvicorn

    config = config or ServeConfig()
    db = db if isinstance(db, AnnotationDB) else AnnotationDB(db)
    warn_if_not_ready(db)
    server = uvicorn.Config(
        create_app(db, config), host=config.host, port=config.port, log_level="info", proxy_headers=True
    )
    redact_tokens_in_server_logs()  # uvicorn.Config has just (re)configured its loggers
    uvicorn.Server(server).run()
