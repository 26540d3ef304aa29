"""The storefront and the dashboard: static HTML/JS served by the app (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)

#: Report files the dashboard may show; nothing else under the report folder is served.
REPORT_FILES = {"metrics.png": "image/png", "report.md": "text/markdown; charset=utf-8"}


@router.get("/", response_class=HTMLResponse)
def storefront() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html; charset=utf-8")


@router.get("/report/{name}")
def report_file(name: str, request: Request) -> FileResponse:
    folder: Path | None = request.app.state.settings.report_dir
    if name not in REPORT_FILES or folder is None or not (folder / name).is_file():
        raise HTTPException(404, "no such report file; start the service with SHOPFUSION_REPORT_DIR")
    return FileResponse(folder / name, media_type=REPORT_FILES[name])


@router.get("/storefront/config.json")
def storefront_config(request: Request) -> dict[str, str]:
    """What the page needs: the publishable ingest key (grants ingestion only)."""
    return {"ingest_key": request.app.state.settings.storefront_key}
