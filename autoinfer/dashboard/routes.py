"""The dashboard's pages: server-rendered shells over the JSON API, served by the API's own app.

The pages carry no data and need no key; `static/dashboard.js` fills them from `/v1` with the
key the user typed into the login form (kept in the browser session). With `--insecure` the
login form is skipped.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from autoinfer import __version__
from autoinfer.errors import NotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The statuses and event outcomes the filters offer, in the order their lives run.
JOB_STATUSES = (
    "new",
    "waiting for resources",
    "waiting for data/model download",
    "running",
    "uploading",
    "finished",
    "failed",
    "stopped",
)
EVENT_OUTCOMES = ("pending", "matched", "duplicate", "ignored", "rejected", "failed")

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def _page(request: Request, template: str, page: str, **context: object) -> HTMLResponse:
    service = request.app.state.service
    return templates.TemplateResponse(
        request,
        template,
        {
            "page": page,
            "auth_required": not service.insecure,
            "version": __version__,
            **context,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    """The last hour at a glance: images/s, jobs ended per minute, queue and inbox depth,
    notification backlog (charts drawn by the script from `/v1/overview`)."""
    return _page(request, "overview.html", "overview")


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    """Recent jobs, live, filtered by status, a page at a time."""
    return _page(request, "jobs.html", "jobs", statuses=JOB_STATUSES)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    """One job: spec, timeline, live log, stop/retry, predictions gallery, output location."""
    return _page(request, "job.html", "job", job_id=job_id)


@router.get("/events", response_class=HTMLResponse)
def events_page(request: Request) -> HTMLResponse:
    """Recent storage events and what became of each."""
    return _page(request, "events.html", "events", outcomes=EVENT_OUTCOMES)


@router.get("/triggers", response_class=HTMLResponse)
def triggers_page(request: Request) -> HTMLResponse:
    """The trigger rules with their counts."""
    return _page(request, "triggers.html", "triggers")


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The dashboard's script and style sheet (a flat folder; no other paths are served)."""
    path = STATIC / name
    media_type = STATIC_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or media_type is None or not path.is_file():
        raise NotFound(f"static file {name!r}: no such file")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
