"""``Flags.decide(route_id, ctx)``: override > Unleash > file > route default (legacy).

Never raises and never does I/O: it reads snapshots the providers swap in the
background. ``describe`` summarises a route for people (flagctl, the admin API).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Protocol

from flags.model import Backend, Decision, EvaluationContext, Override, flag_key
from flags.overrides import OverrideStore
from flags.unleash import Toggles, normalized_value


class Provider(Protocol):
    name: str
    toggles: Toggles

    @property
    def stale(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@functools.lru_cache(maxsize=4096)
def _decision(backend: Backend, reason: str, flag: str, source: str, variant: str | None = None) -> Decision:
    """Decisions are immutable and few (routes x backends x reasons): one object each, made once,
    instead of a frozen dataclass built per request."""
    return Decision(backend=backend, reason=reason, flag=flag, source=source, variant=variant)


def _override_decision(override: Override, flag: str, ctx: EvaluationContext) -> Decision:
    if override.percent is None:
        return _decision(override.backend, "override", flag, "override")
    # Sticky like Unleash's flexible rollout: the same user lands on the same side.
    sticky = ctx.user_id or ctx.session_id or str(random.randint(1, 100_000))  # noqa: S311
    candidate = normalized_value(sticky, flag) <= override.percent
    return _decision("candidate" if candidate else "legacy", "override", flag, "override")


def _backend_of(percent: int | None) -> str:
    if percent is None:
        return "targeting"
    return "legacy" if percent == 0 else "candidate" if percent == 100 else "split"


def _reason_of(share: int | None) -> str:
    if share is None:
        return "targeting_match"
    return {0: "disabled", 100: "static"}.get(share, "split")


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteState:
    """What a person wants to know about one route now."""

    route: str
    flag: str
    backend: str  # legacy | candidate | split | targeting
    percent: int | None  # share to the candidate; None when it depends on targeting rules
    source: str  # override | unleash | file | default
    reason: str
    override: Override | None


class Flags:
    def __init__(self, *, overrides: OverrideStore, providers: list[Provider]) -> None:
        self.overrides = overrides
        self.providers = providers  # in precedence order: Unleash first, then the file

    def decide(self, route_id: str, ctx: EvaluationContext) -> Decision:
        flag = flag_key(route_id)
        try:
            override = self.overrides.snapshot().get(route_id)
            if override is not None and override.active():
                return _override_decision(override, flag, ctx)
            context = ctx.unleash()
            for provider in self.providers:
                evaluation = provider.toggles.evaluate(flag, context)
                if evaluation is not None:
                    return _decision(
                        "candidate" if evaluation.enabled else "legacy",
                        "stale" if provider.stale else evaluation.reason,
                        flag,
                        provider.name,
                        evaluation.variant,
                    )
            return _decision("legacy", "default", flag, "default")
        except Exception:  # the request path must get an answer whatever a provider holds
            return _decision("legacy", "error", flag, "default")

    def describe(self, route_id: str) -> RouteState:
        """Where the route's traffic goes now, as the candidate's share."""
        flag = flag_key(route_id)
        override = self.overrides.snapshot().get(route_id)
        if override is not None and override.active():
            percent = override.percent
            if percent is None:
                percent = 100 if override.backend == "candidate" else 0
            return RouteState(
                route=route_id,
                flag=flag,
                backend=_backend_of(percent),
                percent=percent,
                source="override",
                reason="override",
                override=override,
            )
        for provider in self.providers:
            if flag in provider.toggles.evaluators:
                share = provider.toggles.rollout.get(flag)
                reason = "stale" if provider.stale else _reason_of(share)
                return RouteState(
                    route=route_id,
                    flag=flag,
                    backend=_backend_of(share),
                    percent=share,
                    source=provider.name,
                    reason=reason,
                    override=None,
                )
        return RouteState(
            route=route_id,
            flag=flag,
            backend="legacy",
            percent=0,
            source="default",
            reason="default",
            override=None,
        )

    def start(self) -> None:
        self.overrides.start()
        for provider in self.providers:
            provider.start()

    def stop(self) -> None:
        self.overrides.stop()
        for provider in self.providers:
            provider.stop()
