"""The HTTP service (FastAPI under uvicorn): uploads, a team's status, the public board.

    POST /api/submissions          a .tar.gz or .zip body (Bearer token): 201 {id, queue_position, quota} | 4xx {detail}
    GET  /api/submissions          the team's submissions (Bearer token or the sign-in cookie)
    GET  /api/submissions/{id}     one of them: status, fixed reason, pooled score
    GET  /api/leaderboard          the public board as JSON (`board.export.results_json`)
    GET  /                         the public board (`board.render_html`)
    GET  /submissions/{id}         a team's status page (the sign-in cookie, or a Bearer token)
    GET|POST /login                the token form: sets an HttpOnly, SameSite=Strict cookie
    GET  /api/health               {"ok": true} when the database answers

Uploads are unpacked in `RUNS_DIR/server/uploads/` (`archive.unpack`), checked as `submit validate` checks a folder
before running it (metadata, files), stored in the database and queued; the folder is then removed.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import InputError
from . import archive, board, pages, store
from .queue import defer, make_app

COOKIE = "ratspain_token"


@dataclass(frozen=True)
class ServiceSettings:
    db: str
    dataset_name: str
    runs_dir: Path
    quota: store.Quota = store.Quota(per_day=5, total=100)
    limits: archive.Limits = archive.Limits()
    time_limit: float = 1800.0   # per fold
    memory_mb: int = 8192        # per fold
    ladder: str = "step"         # what a team reads (`ladder`)
    eta: float = 0.02
    reveal_step: float = 300.0   # a submission's end is shown on this grid of seconds from its start (timing channel)


def _error(status: int, detail: str, **more) -> JSONResponse:
    return JSONResponse({"detail": detail, **more}, status_code=status)


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": pages.csp(text),
                                                           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def _token(request: Request, cookie: bool) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE) if cookie else None


def _archive_field(content_type: str, body: bytes) -> bytes | None:
    """The upload: the `archive` field of a multipart/form-data body (the contract's form), else the body itself."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    from email import message_from_bytes
    from email.policy import HTTP

    msg = message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body, policy=HTTP)
    for part in msg.iter_parts() if msg.is_multipart() else ():
        if part.get_param("name", header="content-disposition") == "archive":
            return part.get_payload(decode=True) or b""
    return None


def _static_checks(folder: Path) -> tuple[dict, str | None]:
    """(metadata, None) or (_, the first failed check as one line): what `submit validate` checks before running code."""
    from ..evaluation.identity import folder_files
    from ..submit import code, metadata

    meta, first = metadata.read(folder)
    if meta is None:
        return {}, first.message.replace(str(folder), "the archive")
    if meta.get("kind", "method") != "method":
        return meta, "kind must be \"method\": the service runs code (a predictions file needs the hidden images)"
    for c in metadata.check_metadata(meta, folder, code.builtin_names()):
        if c.status == "FAIL":
            return meta, f"{c.name}: {c.message}".replace(str(folder), "the archive") + (f" ({c.fix})" if c.fix else "")
    try:
        folder_files(folder)
    except Exception as e:
        return meta, str(e).replace(str(folder), "the archive")
    return meta, None


def create_app(settings: ServiceSettings) -> FastAPI:
    from contextlib import asynccontextmanager

    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(settings.db, min_size=2, max_size=16, kwargs={"autocommit": True}, open=False)
    queue_app = make_app(settings.db)
    uploads = settings.runs_dir / "server" / "uploads"

    @asynccontextmanager
    async def lifespan(app):
        pool.open(wait=True)
        async with queue_app.open_async():
            yield
        pool.close()

    app = FastAPI(title="ratspain-bench leaderboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def team_of(request: Request, cookie: bool = False):
        with pool.connection() as conn:
            return store.team_for_token(conn, _token(request, cookie))

    @app.get("/api/health")
    def health():
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"ok": True}

    def admit(request: Request):
        """The uploading team, or the refusal (bad token, phase over)."""
        team = team_of(request)
        if team is None:
            return None, _error(401, "a valid team token is needed (Authorization: Bearer TOKEN)")
        with pool.connection() as conn:
            closed = store.get_meta(conn, "finalized")
        if closed:
            return None, _error(409, f"the phase is over: it was finalized at {closed} (the final board is at /final)")
        return team, None

    @app.post("/api/submissions")
    async def submit(request: Request):
        team, refusal = await run_in_threadpool(admit, request)
        if refusal is not None:
            return refusal
        cap = int(settings.limits.upload_mb * 2**20)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return _error(413, f"the archive is more than the limit of {settings.limits.upload_mb:g} MiB")
        accepted = await run_in_threadpool(accept, team, request.headers.get("content-type", ""), bytes(body))
        if isinstance(accepted, Response):
            return accepted
        sid, left = accepted
        try:
            job = await defer(queue_app, sid)
        except Exception:  # a worker's watch defers it later (store.orphans)
            job = None
        position = await run_in_threadpool(queued, sid, job)
        return JSONResponse({"id": sid, "status": "queued", "queue_position": position, "quota": left,
                             "status_url": f"/submissions/{sid}"}, status_code=201)

    def queued(sid: int, job) -> int | None:
        with pool.connection() as conn:
            if job is not None:
                store.set_job(conn, sid, job)
            return store.queue_position(conn, sid)

    def accept(team, content_type: str, body: bytes):
        """(id, quota left) of the queued submission, or the refusal: unpacking and checks off the event loop."""
        data = _archive_field(content_type, body)
        if data is None:
            return _error(422, "a multipart/form-data upload needs a field named `archive` holding the .tar.gz or .zip")
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="upload-", dir=uploads))
        try:
            try:
                folder = archive.unpack(data, tmp / "src", settings.limits)
            except archive.Refused as e:
                return _error(e.status, str(e))
            meta, problem = _static_checks(folder)
            if problem:
                return _error(422, problem)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        limits = {"time_limit": settings.time_limit, "memory_mb": settings.memory_mb, "quota_per_day": settings.quota.per_day,
                  "ladder": settings.ladder, "eta": settings.eta, "reveal_step": settings.reveal_step,
                  "archive": {"upload_mb": settings.limits.upload_mb, "total_mb": settings.limits.total_mb,
                              "members": settings.limits.members, "ratio": settings.limits.ratio}}
        with pool.connection() as conn:
            other = store.name_owner(conn, str(meta["name"]))
            if other not in (None, team.name):
                return _error(409, f"name {meta['name']!r} is taken by another team; choose another name in submission.toml")
            try:
                return store.add_submission(conn, team, str(meta["name"]), data, meta, limits, settings.quota)
            except store.QuotaExhausted as e:
                return _error(429, str(e), quota=e.left)

    @app.get("/api/submissions")
    def mine(request: Request):
        team = team_of(request, cookie=True)
        if team is None:
            return _error(401, "a valid team token is needed (Authorization: Bearer TOKEN)")
        with pool.connection() as conn:
            return {"team": team.name, "submissions": store.team_submissions(conn, team), "quota": settings.quota.left(conn, team)}

    @app.get("/api/submissions/{sid}")
    def one(sid: int, request: Request):
        team = team_of(request, cookie=True)
        if team is None:
            return _error(401, "a valid team token is needed (Authorization: Bearer TOKEN)")
        with pool.connection() as conn:
            view = store.team_submission(conn, team, sid)
        return view if view is not None else _error(404, f"no submission {sid} of team {team.name}")

    @app.post("/api/submissions/{sid}/select")
    def select(sid: int, request: Request):
        team = team_of(request)
        if team is None:
            return _error(401, "a valid team token is needed (Authorization: Bearer TOKEN)")
        with pool.connection() as conn:
            try:
                store.select(conn, team, sid)
            except InputError as e:
                return _error(409, str(e))
        return {"team": team.name, "selected": sid}

    @app.get("/api/final")
    def final_json():
        with pool.connection() as conn:
            text = store.get_meta(conn, "final_json")
        return Response(text, media_type="application/json") if text else _error(404, "no final board yet (`server finalize`)")

    @app.get("/final")
    def final_page():
        with pool.connection() as conn:
            text = store.get_meta(conn, "final_html")
        return _html(text) if text else _html(pages.page("Final board", "<h1>No final board yet</h1>"), 404)

    @app.get("/api/leaderboard")
    def leaderboard_json():
        with pool.connection() as conn:
            return Response(board.as_json(conn, settings.dataset_name), media_type="application/json")

    @app.get("/")
    def index():
        with pool.connection() as conn:
            return _html(board.html(conn, settings.dataset_name))

    @app.get("/submissions/{sid}")
    def status_page(sid: int, request: Request):
        team = team_of(request, cookie=True)
        if team is None:
            return RedirectResponse("/login", status_code=303)
        with pool.connection() as conn:
            view = store.team_submission(conn, team, sid)
            meta = conn.execute("SELECT metadata FROM rb_submission WHERE id = %s AND team_id = %s", (sid, team.id)).fetchone()
        if view is None:
            return _html(pages.page("Not found", f"<h1>No submission {sid} of team {pages.escape(team.name)}</h1>"), 404)
        return _html(pages.status(view, meta[0] if meta else {}))

    @app.get("/login")
    def login_form():
        return _html(pages.login())

    @app.post("/login")
    async def login(request: Request):
        from urllib.parse import parse_qs

        body = (await request.body())[:4096].decode(errors="replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        with pool.connection() as conn:
            team = store.team_for_token(conn, token)
        if team is None:
            return _html(pages.login("That token is not valid (or was revoked)."), 401)
        with pool.connection() as conn:
            rows = store.team_submissions(conn, team)
        items = "".join(f"<li><a href=\"/submissions/{r['id']}\">#{r['id']} {pages.escape(r['name'])}</a>: "
                        f"{pages.escape(r['status'])}</li>" for r in rows) or "<li>none yet</li>"
        resp = _html(pages.page("Signed in", f"<h1>Team {pages.escape(team.name)}</h1><ul>{items}</ul>"))
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", max_age=30 * 86400)
        return resp

    return app

