"""``shopfusion serve``: the HTTP API, storefront and dashboard on a trained artifact."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    artifact: Annotated[
        Path | None, typer.Option(help="artifact directory written by `shopfusion train`")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    store: Annotated[Path | None, typer.Option(help="SQLite file for posted events")] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="evaluation report folder for the dashboard")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes sharing the port; each loads the artifact and keeps its own cache",
        ),
    ] = 1,
    hash_key: Annotated[
        str | None,
        typer.Option(
            "--hash-key", help="print the SHA-256 of an API key for SHOPFUSION_*_KEY_HASHES and exit"
        ),
    ] = None,
) -> None:
    """Serve search, recommendations, explanations, events, the storefront and the dashboard.

    Keys, limits and rules come from SHOPFUSION_* environment variables (see README)."""
    from shopfusion.serving.security import hash_key as digest

    if hash_key is not None:
        typer.echo(digest(hash_key))
        return
    if artifact is None:
        raise typer.BadParameter("--artifact is required", param_hint="--artifact")
    overrides: dict[str, Any] = {"artifact": artifact}
    if store is not None:
        overrides["store"] = store
    if report_dir is not None:
        overrides["report_dir"] = report_dir
    run_server(overrides, host, port, workers=workers)


def run_server(overrides: dict[str, Any], host: str, port: int, banner: str = "", workers: int = 1) -> None:
    """Validate the settings, print where to go, and serve until interrupted.

    With ``workers`` above 1, uvicorn starts that many processes on the port; each builds the app
    from the environment (:func:`~shopfusion.serving.app.app_from_env`), so the overrides are
    passed on as ``SHOPFUSION_*`` variables."""
    import uvicorn

    from shopfusion.serving.app import configure_logging, create_app
    from shopfusion.serving.settings import ServiceSettings

    console = Console(stderr=True)
    try:
        settings = ServiceSettings(**overrides)
    except ValidationError as exc:
        console.print(f"[red]error:[/red] invalid service settings:\n{exc}")
        raise typer.Exit(1) from None
    if not (settings.artifact / "manifest.json").is_file():
        console.print(
            f"[red]error:[/red] {settings.artifact} is not an artifact; write one with `shopfusion train`"
        )
        raise typer.Exit(1)
    if not settings.pseudonym_secret:
        console.print(
            "[yellow]note:[/yellow] SHOPFUSION_PSEUDONYM_SECRET is unset: pseudonyms change on restart"
        )
    url = f"http://{host}:{port}/"
    typer.echo(f"{banner}storefront: {url}\ndashboard:  {url}dashboard\nAPI docs:   {url}docs")
    configure_logging()
    # uvicorn's own access log would print query strings, which carry user ids: ours prints routes.
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")
        return
    for name, value in overrides.items():
        os.environ[f"SHOPFUSION_{name.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    uvicorn.run(
        "shopfusion.serving.app:app_from_env",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
    )


def demo_keys() -> tuple[str, str]:
    """A fresh admin key and storefront key for a demo session."""
    return secrets.token_urlsafe(18), secrets.token_urlsafe(18)
