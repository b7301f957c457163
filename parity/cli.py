"""``parity run``: replay the corpus against legacy and the new services, and say what differs.

Examples::

    # straight to the backends (requests signed with IDENTITY_SECRET)
    parity run --control http://127.0.0.1:8001 --candidate reviews=http://127.0.0.1:8002 \\
        --candidate recommendations=http://127.0.0.1:8003 --report var/parity

    # through a gateway, forcing each backend (needs GATEWAY_ADMIN_TOKEN)
    parity run --gateway http://127.0.0.1:8000 --report var/parity

    # captured traffic instead of the corpus
    parity run var/capture.jsonl --control ... --candidate ...

Reads only by default; ``--writes`` replays writes too (each backend on its own copy of the data,
with ``--setup-candidate`` naming a monolith on the candidate's copy). Exit codes: 0 all match,
1 a mismatch, 2 usage or connection errors.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from identity.dev import DEV_SECRET
from parity.capture import load_capture
from parity.corpus import Case, CorpusError, load_cases
from parity.report import summarise, write_reports
from parity.rules import NO_RULES, RulesError, load_rules
from parity.runner import CaseResult, RunConfig, Runner, RunnerError

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode=None, add_completion=False)
out = Console()
err = Console(stderr=True)


@app.callback()
def main() -> None:
    """Parity between the monolith and the new services."""


def _fail(message: str) -> typer.Exit:
    err.print(f"parity: {message}", markup=False)
    return typer.Exit(code=2)


def _cases(paths: list[Path]) -> list[Case]:
    if not paths:
        return load_cases()
    jsonl = [p for p in paths if p.suffix == ".jsonl"]
    yaml_files = [p for p in paths if p.suffix != ".jsonl"]
    return (
        [*load_cases(yaml_files), *(case for path in jsonl for case in load_capture(path))]
        if yaml_files
        else [case for path in jsonl for case in load_capture(path)]
    )


def _candidates(raw: list[str]) -> dict[str, str]:
    candidates = {}
    for item in raw:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith("http"):
            raise _fail(f"--candidate takes CLUSTER=URL, e.g. reviews=http://127.0.0.1:8002 (got {item!r})")
        candidates[name] = url.rstrip("/")
    return candidates


def _table(results: list[CaseResult]) -> Table:
    table = Table(title="Parity by route")
    for column in ("route", "requests", "match", "mismatch", "noise", "errors", "skipped"):
        table.add_column(column, justify="left" if column == "route" else "right")
    for s in summarise(results):
        table.add_row(
            s.route,
            str(s.requests),
            str(s.match),
            f"[red]{s.mismatch}[/]" if s.mismatch else "0",
            str(s.noise),
            f"[red]{s.errors}[/]" if s.errors else "0",
            str(s.skipped),
        )
    return table


@app.command()
def run(
    paths: Annotated[
        list[Path] | None, typer.Argument(metavar="[CASES...]", help="YAML case files or capture .jsonl")
    ] = None,
    control: Annotated[str | None, typer.Option(help="the monolith's base URL")] = None,
    candidate: Annotated[list[str] | None, typer.Option(help="CLUSTER=URL, repeatable")] = None,
    gateway: Annotated[str | None, typer.Option(help="go through this gateway, forcing each backend")] = None,
    report: Annotated[
        Path | None, typer.Option(help="write parity.json, junit.xml and parity.html here")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 8,
    writes: Annotated[
        bool, typer.Option("--writes", help="also replay writes (separate data copies!)")
    ] = False,
    setup_candidate: Annotated[
        str | None, typer.Option(help="a monolith on the candidate's data, for setup steps")
    ] = None,
    ignore: Annotated[Path | None, typer.Option(help="YAML ignore rules per route")] = None,
    noise: Annotated[
        bool, typer.Option("--noise/--no-noise", help="call the control twice to find noise")
    ] = True,
) -> None:
    """Replay cases against control and candidate, then report."""
    try:
        cases = _cases(paths or [])
        rules = load_rules(ignore) if ignore else NO_RULES
    except (CorpusError, RulesError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    config = RunConfig(
        control=control.rstrip("/") if control else None,
        candidates=_candidates(candidate or []),
        gateway=gateway.rstrip("/") if gateway else None,
        admin_token=os.environ.get("GATEWAY_ADMIN_TOKEN", "dev-only-admin-token"),
        identity_secret=os.environ.get("IDENTITY_SECRET", DEV_SECRET),
        setup_candidate=setup_candidate.rstrip("/") if setup_candidate else None,
        writes=writes,
        concurrency=concurrency,
        noise=noise,
        rules=rules,
    )
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("replaying", total=len(cases))

        async def go() -> list[CaseResult]:
            async with httpx.AsyncClient(timeout=config.timeout) as client:
                runner = Runner(config, client)
                return await runner.run(cases, lambda _: progress.advance(task))

        try:
            results = asyncio.run(go())
        except RunnerError as exc:
            raise _fail(str(exc)) from exc
    out.print(_table(results))
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("match", "mismatch", "error", "skipped")
    }
    out.print(
        f"{len(results)} cases in {time.monotonic() - started:.1f}s: {counts['match']} match, "
        f"{counts['mismatch']} mismatch, {counts['error']} errors, {counts['skipped']} skipped"
    )
    for result in results:
        if result.status == "mismatch":
            out.print(
                f"[red]mismatch[/] {result.case.id}: " + "; ".join(str(d) for d in result.differences[:3])
            )
        elif result.status == "error":
            out.print(f"[red]error[/] {result.case.id}: {result.error}")
    if report is not None:
        for path in write_reports(report, results, config):
            out.print(f"wrote {path}")
    if counts["error"]:
        raise typer.Exit(code=2)
    if counts["mismatch"]:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
