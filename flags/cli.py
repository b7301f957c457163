"""``flagctl``: see and move the hot routes, every change with a reason, audited.

Examples::

    flagctl status
    flagctl route reviews.list --to candidate --percent 25 --reason "canary"
    flagctl flip-all --to candidate --reason "8 pm push spike" --ttl 2h
    flagctl release --all --reason "spike over"
    flagctl audit --since 1h
    flagctl rollout start reviews.list --steps 1,5,25,50,100 --every 60s --reason "move reviews"
    flagctl rollout status reviews.list
    flagctl rollout pause reviews.list --reason "looking at a p99 bump"

The routes are those of the gateway's route table (ROUTES_FILE, default the shipped
gateway/routes.toml). The store is Redis when REDIS_URL is set (every gateway worker sees a
change within 100 ms), else var/overrides.json. Exit codes: 0 done, 2 usage or configuration
error (unknown route, missing reason, route table unreadable, store unreachable).
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flags.decide import Flags
from flags.model import AuditEntry, Backend, InvalidOverride, Override, note_problems
from flags.overrides import OverrideConflict, OverrideStoreError, change_rollout, start_rollouts
from flags.providers import UnleashProvider
from flags.rollout import (
    PERSON_CHANGES,
    READ_METHODS,
    InvalidRollout,
    Plan,
    Rollout,
    RolloutStateError,
    parse_steps,
    route_problems,
)
from flags.routes_file import RoutesFileError, route_ids, route_methods
from flags.settings import FlagsConfigError, FlagsSettings, build_flags, load_flags_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode=None, add_completion=False)
out = Console()
err = Console(stderr=True)
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _fail(message: str) -> typer.Exit:
    err.print(f"flagctl: {message}", markup=False)
    return typer.Exit(code=2)


def _seconds(raw: str, option: str) -> float:
    match = _DURATION.fullmatch(raw.strip())
    if match is None:
        raise _fail(f"{option} takes a duration like 90s, 30m, 2h or 1d, not {raw!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _actor(actor: str | None) -> str:
    return actor or f"{getpass.getuser()}@{socket.gethostname()}"


def _settings() -> FlagsSettings:
    try:
        return load_flags_settings()
    except FlagsConfigError as exc:
        raise _fail(str(exc)) from exc


def _routes() -> tuple[str, ...]:
    """The known routes: the route table's, in its order."""
    try:
        return route_ids(_settings().routes_file)
    except RoutesFileError as exc:
        raise _fail(str(exc)) from exc


def _flags() -> Flags:
    flags = build_flags(_settings())
    for provider in flags.providers:
        if isinstance(provider, UnleashProvider) and not provider.refresh():
            err.print(
                f"warning: Unleash unreachable ({provider.last_error}); showing its cached toggles",
                markup=False,
            )
    if not flags.overrides.healthy():
        raise _fail("the override store (Redis) is not reachable")
    return flags


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# The options that carry the fields flags.model checks (it names them as the admin API does).
_OPTIONS = {
    "ttl_seconds": "--ttl",
    "reason": "--reason",
    "actor": "--actor",
    "percent": "--percent",
    "route": "ROUTE",
    "steps": "--steps",
    "every_seconds": "--every",
    "min_samples": "--min-samples",
    "min_parity": "--min-parity",
    "max_error_ratio": "--max-error-ratio",
    "max_p99_ratio": "--max-p99-ratio",
}


def _invalid(exc: InvalidOverride) -> typer.Exit:
    return _fail(
        "; ".join(
            f"{_OPTIONS.get(name, name)} {' and '.join(problems)}" for name, problems in exc.fields.items()
        )
    )


def _check_note(actor: str, reason: str) -> None:
    """The same bounds on who and why as the admin API (flags.model), before anything is written."""
    if not reason.strip():
        raise _fail("--reason must say why")
    problems = note_problems(actor, reason)
    if problems:
        raise _invalid(InvalidOverride(problems))


def _apply(
    flags: Flags, changes: list[tuple[str, Override | None]], actor: str, reason: str
) -> list[AuditEntry]:
    _check_note(actor, reason)
    try:
        return flags.overrides.apply(changes, actor=actor, reason=reason)
    except OverrideStoreError as exc:
        raise _fail(str(exc)) from exc


def _print_changes(entries: list[AuditEntry], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([entry.to_json() for entry in entries]))
        return
    for entry in entries:
        after = entry.after
        target = (
            "released"
            if after is None
            else f"{after['backend']}" + (f" {after['percent']}%" if after.get("percent") is not None else "")
        )
        out.print(
            f"{entry.route}: {target}  ({entry.actor}, {_when(entry.at)}: {entry.reason})", markup=False
        )


Reason = Annotated[str, typer.Option("--reason", help="why (required; goes to the audit trail)")]
Actor = Annotated[str | None, typer.Option("--actor", help="who (default: user@host)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Ttl = Annotated[str | None, typer.Option("--ttl", help="expire after e.g. 30m, 2h")]


def _backend(to: str) -> Backend:
    if to == "candidate":
        return "candidate"
    if to == "legacy":
        return "legacy"
    raise _fail("--to must be candidate or legacy")


def _override(
    route: str, to: Backend, percent: int | None, reason: str, actor: str, ttl: str | None
) -> Override:
    _check_note(actor, reason)
    ttl_seconds = _seconds(ttl, "--ttl") if ttl else None
    try:
        return Override.create(
            route=route, backend=to, percent=percent, reason=reason, actor=actor, ttl_seconds=ttl_seconds
        )
    except InvalidOverride as exc:
        raise _invalid(exc) from exc


@app.command()
def status(as_json: Json = False) -> None:
    """Every route: where its traffic goes now, from which layer, and the last change."""
    routes, flags = _routes(), _flags()
    last: dict[str, AuditEntry] = {}
    try:
        for entry in flags.overrides.audit(limit=500):
            last[entry.route] = entry
    except OverrideStoreError as exc:
        raise _fail(str(exc)) from exc
    states = [flags.describe(route) for route in routes]
    if as_json:
        rows = [
            {
                "route": s.route,
                "flag": s.flag,
                "backend": s.backend,
                "percent": s.percent,
                "source": s.source,
                "reason": s.reason,
                "last_change": last[s.route].to_json() if s.route in last else None,
            }
            for s in states
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(title="Hot routes")
    for column in ("route", "backend", "% candidate", "source", "reason", "last change"):
        table.add_column(column)
    for s in states:
        change = last.get(s.route)
        changed = f"{change.actor} {_when(change.at)}: {change.reason}" if change else ""
        percent = "?" if s.percent is None else f"{s.percent}%"
        table.add_row(s.route, s.backend, percent, s.source, s.reason, changed)
    out.print(table)


@app.command()
def route(
    route_id: Annotated[str, typer.Argument(metavar="ROUTE", help="route id, e.g. reviews.list")],
    to: Annotated[str, typer.Option("--to", help="candidate or legacy")],
    reason: Reason,
    percent: Annotated[
        int | None, typer.Option("--percent", min=0, max=100, help="share to the candidate")
    ] = None,
    ttl: Ttl = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Move one route (all of it, or a percentage of users) with an override."""
    backend = _backend(to)
    if percent is not None and backend != "candidate":
        raise _fail("--percent is the candidate's share; use it with --to candidate")
    routes, flags = _routes(), _flags()
    if route_id not in routes:
        raise _fail(f"unknown route {route_id!r}; known: {', '.join(routes)}")
    who = _actor(actor)
    change = _override(route_id, backend, percent, reason, who, ttl)
    _print_changes(_apply(flags, [(route_id, change)], who, reason), as_json)


@app.command("flip-all")
def flip_all(
    to: Annotated[str, typer.Option("--to", help="candidate or legacy")],
    reason: Reason,
    ttl: Ttl = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Move every hot route at once (one atomic change): the 8 pm move."""
    backend = _backend(to)
    routes, flags = _routes(), _flags()
    who = _actor(actor)
    changes: list[tuple[str, Override | None]] = [
        (route_id, _override(route_id, backend, None, reason, who, ttl)) for route_id in routes
    ]
    _print_changes(_apply(flags, changes, who, reason), as_json)


@app.command()
def release(
    reason: Reason,
    route_id: Annotated[str | None, typer.Argument(metavar="[ROUTE]", help="route id")] = None,
    all_routes: Annotated[bool, typer.Option("--all", help="release every override")] = False,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Remove overrides: the route goes back to what Unleash or the flags file say."""
    if (route_id is None) == (not all_routes):
        raise _fail("name one ROUTE or pass --all")
    flags = _flags()
    current = flags.overrides.snapshot()
    routes = list(current) if all_routes else [route_id]
    if not routes or (route_id is not None and route_id not in current):
        raise _fail("nothing to release: no such override")
    who = _actor(actor)
    _print_changes(_apply(flags, [(r, None) for r in routes if r is not None], who, reason), as_json)


@app.command()
def audit(
    since: Annotated[str | None, typer.Option("--since", help="only changes newer than e.g. 1h")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: Json = False,
) -> None:
    """The audit trail: who changed what, when, why, before and after."""
    flags = _flags()
    cutoff = time.time() - _seconds(since, "--since") if since else None
    try:
        entries = flags.overrides.audit(since=cutoff, limit=limit)
    except OverrideStoreError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps([entry.to_json() for entry in entries]))
        return
    table = Table(title=f"Audit ({len(entries)} changes)")
    for column in ("when", "route", "actor", "reason", "before", "after"):
        table.add_column(column)

    def show(value: dict[str, Any] | None) -> str:
        if value is None:
            return "-"
        return str(value["backend"]) + (f" {value['percent']}%" if value.get("percent") is not None else "")

    for entry in entries:
        table.add_row(
            _when(entry.at), entry.route, entry.actor, entry.reason, show(entry.before), show(entry.after)
        )
    out.print(table)


# ---------------------------------------------------------------- rollouts (ADR 0016)

rollout_app = typer.Typer(
    help="Parity-gated progressive rollouts: the gateway moves a route step by step while every gate "
    "passes, and back when one fails (docs/runbook.md: Moving a route safely).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(rollout_app, name="rollout")
Steps = Annotated[str, typer.Option("--steps", help="percent to the candidate per step, e.g. 1,5,25,50,100")]
Every = Annotated[str, typer.Option("--every", help="each step's window, e.g. 60s, 5m")]
OneRoute = Annotated[str | None, typer.Argument(metavar="[ROUTE]", help="route id")]
AllRoutes = Annotated[bool, typer.Option("--all", help="every rollout (start: every read route, in turn)")]


def _hot_routes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The route table's routes, and those a rollout can move (GET/HEAD: their answers are compared)."""
    try:
        methods = route_methods(_settings().routes_file)
    except RoutesFileError as exc:
        raise _fail(str(exc)) from exc
    return tuple(methods), tuple(route for route, allowed in methods.items() if allowed <= READ_METHODS)


def _plan(
    steps: str, every: str, min_samples: int, min_parity: float, max_error_ratio: float, max_p99_ratio: float
) -> Plan:
    parsed = parse_steps(steps)
    if parsed is None:
        raise _fail(f"--steps takes whole percentages separated by commas, e.g. 1,5,25,50,100, not {steps!r}")
    try:
        return Plan.create(
            steps=parsed,
            every_seconds=_seconds(every, "--every"),
            min_samples=min_samples,
            min_parity=min_parity,
            max_error_ratio=max_error_ratio,
            max_p99_ratio=max_p99_ratio,
        )
    except InvalidRollout as exc:
        raise _invalid(exc) from exc


def _rollouts(flags: Flags) -> dict[str, Rollout]:
    try:
        return dict(flags.overrides.rollouts())
    except OverrideStoreError as exc:
        raise _fail(str(exc)) from exc


def _gate_line(rollout: Rollout) -> str:
    gates = rollout.gates
    if not gates:
        return "no window judged yet"
    parity = gates.get("parity_percent")
    candidate, legacy = gates.get("candidate") or {}, gates.get("legacy") or {}

    def rate(side: dict[str, Any]) -> str:
        value = side.get("error_rate_percent")
        return "–" if value is None else f"{value:.2f} %"

    def p99(side: dict[str, Any]) -> str:
        value = side.get("p99_ms")
        return "–" if value is None else f"{value:g} ms"

    return (
        f"parity {'–' if parity is None else f'{parity:.2f} %'} of {gates.get('compared', 0)} "
        f"(min {gates.get('min_samples', '?')}); errors cand. {rate(candidate)} vs legacy {rate(legacy)}; "
        f"p99 cand. {p99(candidate)} vs legacy {p99(legacy)}; {gates.get('window_seconds', 0)} s of "
        f"{gates.get('every_seconds', 0):g} s counted"
    )


def _show_rollouts(rollouts: list[Rollout], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        documents = [rollout.to_json() for rollout in rollouts]
        out.print_json(json.dumps(documents[0] if single else documents))
        return
    table = Table(title=f"Rollouts ({len(rollouts)})")
    for column in ("route", "state", "% candidate", "step", "gates (current window)", "why"):
        table.add_column(column)
    for r in rollouts:
        step = f"{r.step}/{len(r.plan.steps)} ({','.join(map(str, r.plan.steps))} %)"
        table.add_row(r.route, r.state, f"{r.percent}%", step, _gate_line(r), r.reason)
    out.print(table)
    if single:
        for entry in rollouts[0].history:
            line = f"{entry.get('action')}  {entry.get('percent')}%  {entry.get('reason')}"
            out.print(f"{_when(entry.get('at'))}  {line}", markup=False)


@rollout_app.command("start")
def rollout_start(
    reason: Reason,
    steps: Steps,
    every: Every,
    route_id: OneRoute = None,
    all_routes: AllRoutes = False,
    min_samples: Annotated[int, typer.Option("--min-samples", help="compared answers per window")] = 200,
    min_parity: Annotated[float, typer.Option("--min-parity", help="percent that must match")] = 99.9,
    max_error_ratio: Annotated[
        float, typer.Option("--max-error-ratio", help="candidate error rate <= legacy's x this (+0.1 %)")
    ] = 1.0,
    max_p99_ratio: Annotated[
        float, typer.Option("--max-p99-ratio", help="candidate p99 <= legacy's x this")
    ] = 1.2,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Start moving ROUTE (or --all read routes, one after another) to its candidate, step by step."""
    if (route_id is None) == (not all_routes):
        raise _fail("name one ROUTE or pass --all")
    plan = _plan(steps, every, min_samples, min_parity, max_error_ratio, max_p99_ratio)
    who = _actor(actor)
    _check_note(who, reason)
    known, readable = _hot_routes()
    if route_id is not None:
        problems = route_problems(route_id, known, readable)
        if problems:
            raise _fail(f"ROUTE {route_id!r} {problems['route'][0]}; known: {', '.join(readable)}")
    routes = list(readable) if all_routes else [str(route_id)]
    flags = _flags()
    try:
        started = start_rollouts(flags.overrides, routes, plan, actor=who, reason=reason, now=time.time())
    except (InvalidRollout, RolloutStateError) as exc:
        raise _fail(str(exc)) from exc
    except OverrideConflict:
        raise _fail("a rollout or override changed while starting: see `flagctl rollout status`") from None
    except OverrideStoreError as exc:
        raise _fail(str(exc)) from exc
    if all_routes and not as_json:
        skipped = [route for route in known if route not in readable]
        if skipped:
            out.print(f"not rolled out (write routes, never shadowed): {', '.join(skipped)}", markup=False)
    _show_rollouts(started, as_json)


@rollout_app.command("status")
def rollout_status(route_id: OneRoute = None, as_json: Json = False) -> None:
    """Every rollout (or ROUTE's): state, percent, step, the gate figures of the window and why."""
    flags = _flags()
    rollouts = _rollouts(flags)
    if route_id is not None:
        if route_id not in rollouts:
            raise _fail(f"no rollout of {route_id!r}; rollouts: {', '.join(rollouts) or 'none'}")
        _show_rollouts([rollouts[route_id]], as_json, single=True)
        return
    known = _routes()
    order = {route: n for n, route in enumerate(known)}
    _show_rollouts(sorted(rollouts.values(), key=lambda r: order.get(r.route, len(order))), as_json)


def _change(route_id: str | None, all_routes: bool, action: str, reason: str, actor: str | None,
            as_json: bool) -> None:  # fmt: skip
    accepts, change = PERSON_CHANGES[action]
    if (route_id is None) == (not all_routes):
        raise _fail("name one ROUTE or pass --all")
    who = _actor(actor)
    _check_note(who, reason)
    flags = _flags()
    rollouts = _rollouts(flags)
    if route_id is not None and route_id not in rollouts:
        raise _fail(f"no rollout of {route_id!r}; rollouts: {', '.join(rollouts) or 'none'}")
    targets = [route_id] if route_id is not None else [r for r, x in rollouts.items() if x.state in accepts]
    if not targets:
        raise _fail("no rollout in a state this applies to")
    changed = []
    for target in targets:
        try:
            changed.append(
                change_rollout(flags.overrides, target, lambda r: change(r, who, reason, time.time()))
            )
        except (InvalidRollout, RolloutStateError) as exc:
            raise _fail(str(exc)) from exc
        except OverrideStoreError as exc:
            raise _fail(str(exc)) from exc
        except OverrideConflict:
            raise _fail(f"{target}'s rollout kept changing; try again") from None
    _show_rollouts(changed, as_json)


@rollout_app.command("pause")
def rollout_pause(
    reason: Reason, route_id: OneRoute = None, all_routes: AllRoutes = False, actor: Actor = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Hold ROUTE at its current percent; the gateway stops judging it until it is resumed."""
    _change(route_id, all_routes, "pause", reason, actor, as_json)


@rollout_app.command("resume")
def rollout_resume(
    reason: Reason, route_id: OneRoute = None, all_routes: AllRoutes = False, actor: Actor = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Carry on from the step it was paused at, with a fresh window (its step's override again)."""
    _change(route_id, all_routes, "resume", reason, actor, as_json)


@rollout_app.command("abort")
def rollout_abort(
    reason: Reason, route_id: OneRoute = None, all_routes: AllRoutes = False, actor: Actor = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Stop ROUTE's rollout for good and send the route back to legacy at once."""
    _change(route_id, all_routes, "abort", reason, actor, as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
