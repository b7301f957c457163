"""Runtime feature flags for routing: which backend serves each hot route, decided per request.

``Flags.decide(route_id, EvaluationContext) -> Decision`` reads, in order:

1. an **override** (kill switch) from the override store (file, or Redis when
   ``REDIS_URL`` is set): seen by every worker within 100 ms;
2. **Unleash** (``UNLEASH_URL`` + backend token): toggles polled in the background,
   last known good kept (and cached to disk) when the server is down;
3. the **flags file** (``FLAGS_FILE``, Unleash's client-features JSON), hot-reloaded;
4. the route default: legacy.

The hot routes are the routes of the gateway's route table (``ROUTES_FILE``, default the
shipped ``gateway/routes.toml``), read by ``flags.routes_file``; nothing here lists them again.
The flag of route ``reviews.list`` is ``route.reviews.list``; enabled means candidate.
Nothing here knows about HTTP frameworks or the gateway. ``flagctl`` is the CLI. The override
store also holds progressive rollouts (``flags.rollout``: their state and the checks on what a
person asks for; the gateway judges them) and the leases of the gateway's deciders.

Exceptions: ``FlagsConfigError`` (settings), ``OverrideStoreError`` (a store cannot be
written or read), ``OverrideConflict`` (a conditional write found the route changed; nothing
written), ``InvalidOverride`` (an override or audit entry with bad values, a
``ValueError`` with ``fields``; ``InvalidRollout`` for a rollout), ``RolloutStateError`` (a
rollout change its state does not allow), ``RoutesFileError`` (the route table cannot be read),
``Unsupported`` (internal: a toggle goes to the reference engine). ``decide`` itself never raises.
"""

from flags.decide import Flags, RouteState
from flags.model import AuditEntry, Decision, EvaluationContext, Override, flag_key
from flags.routes_file import RoutesFileError, route_ids, routes_file
from flags.settings import FlagsSettings, build_flags, default_flags, ensure_flags_file, load_flags_settings

__all__ = [
    "AuditEntry",
    "Decision",
    "EvaluationContext",
    "Flags",
    "FlagsSettings",
    "Override",
    "RouteState",
    "RoutesFileError",
    "build_flags",
    "default_flags",
    "ensure_flags_file",
    "flag_key",
    "load_flags_settings",
    "route_ids",
    "routes_file",
]
