"""Transport options (``broker_transport_options`` / ``Connection(transport_options=...)`` / URL query)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from airflow_ha.broker.errors import BrokerConfigError
from airflow_ha.broker.keys import PRIORITY_STEPS

WAIT_POLICIES = ("warn", "raise", "auto")
WAIT_ON = ("publish", "ack")


@dataclass(frozen=True)
class BrokerOptions:
    visibility_timeout: float = 3600.0  # s before an unacked message is given to another consumer
    visibility_sweep_interval: float | None = None  # s between sweeps; default min(timeout / 4, 60)
    poll_sweep_interval: float = 1.0  # s: safety GET on every consumed queue (notifications lost in failover)
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 3.0
    failover_timeout: float = 30.0  # s a command keeps retrying MOVED/ASK/connection errors before giving up
    replication_wait_replicas: int = 1  # WAIT <n> after writes; 0 turns the mitigation off
    replication_wait_timeout_ms: int = 500
    replication_wait_policy: str = "warn"  # when fewer replicas ack in time: warn | raise | auto (transport.py)
    replication_wait_on: tuple[str, ...] = WAIT_ON
    priority_steps: tuple[int, ...] = PRIORITY_STEPS
    max_restore_batch: int = 1000

    @classmethod
    def from_mapping(cls, options: dict | None) -> BrokerOptions:
        """Validate and convert; unknown keys are ignored (Celery/Airflow pass their own options too)."""
        options = dict(options or {})
        values = {}
        for f in fields(cls):
            if f.name not in options or options[f.name] is None:
                continue
            raw = options[f.name]
            try:
                values[f.name] = _convert(f.name, raw)
            except (TypeError, ValueError) as exc:
                raise BrokerConfigError(f"transport option {f.name}={raw!r}: {exc}") from None
        opts = cls(**values)
        opts._validate()
        return opts

    def _validate(self) -> None:
        def bad(name, why):
            raise BrokerConfigError(f"transport option {name}={getattr(self, name)!r}: {why}")

        for name in ("visibility_timeout", "poll_sweep_interval", "socket_timeout", "socket_connect_timeout"):
            if getattr(self, name) <= 0:
                bad(name, "must be > 0")
        if self.visibility_sweep_interval is not None and self.visibility_sweep_interval <= 0:
            bad("visibility_sweep_interval", "must be > 0")
        if self.failover_timeout < 0:
            bad("failover_timeout", "must be >= 0")
        if self.replication_wait_replicas < 0:
            bad("replication_wait_replicas", "must be >= 0 (0 disables WAIT)")
        if self.replication_wait_timeout_ms < 1:
            bad("replication_wait_timeout_ms", "must be >= 1 (WAIT 0 would block forever)")
        if self.replication_wait_timeout_ms / 1000 >= self.socket_timeout:
            bad("replication_wait_timeout_ms", f"must be below socket_timeout ({self.socket_timeout}s)")
        if self.replication_wait_policy not in WAIT_POLICIES:
            bad("replication_wait_policy", f"want one of {', '.join(WAIT_POLICIES)}")
        unknown = set(self.replication_wait_on) - set(WAIT_ON)
        if unknown:
            bad("replication_wait_on", f"unknown {sorted(unknown)}; want a subset of {', '.join(WAIT_ON)}")
        steps = self.priority_steps
        if not steps or steps[0] != 0 or list(steps) != sorted(set(steps)) or steps[-1] > 255:
            bad("priority_steps", "want an ascending list of distinct ints starting at 0")
        if self.max_restore_batch < 1:
            bad("max_restore_batch", "must be >= 1")

    @property
    def sweep_interval(self) -> float:
        if self.visibility_sweep_interval is not None:
            return self.visibility_sweep_interval
        return max(min(self.visibility_timeout / 4, 60.0), 0.5)

    def wait_for(self, kind: str) -> int:
        return self.replication_wait_replicas if kind in self.replication_wait_on else 0


def _convert(name: str, raw):
    if name in ("replication_wait_replicas", "replication_wait_timeout_ms", "max_restore_batch"):
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("want an integer")
        return int(raw)
    if name in ("replication_wait_policy",):
        return str(raw).strip().lower()
    if name == "replication_wait_on":
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(i.strip() for i in items if i.strip())
    if name == "priority_steps":
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(int(i) for i in items)
    value = float(raw)
    if value != value:  # NaN
        raise ValueError("not a number")
    return value
