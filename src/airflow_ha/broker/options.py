"""The one definition of every transport option of the ``rediscluster://`` broker.

Every option can be given in three places; later ones win:

1. the defaults below (the library's; the chart ships the same);
2. the broker URL's query, ``rediscluster://...?replication_wait_policy=auto`` (the chart writes
   ``broker.transportOptions`` there, so every pod gets them with ``[celery] broker_url``);
3. the Celery app's ``broker_transport_options``, i.e. what a user set in Airflow's
   ``[celery_broker_transport_options]``.

The URL parser's accepted keys (:data:`URL_KEYS`), the chart's ``values.schema.json``
``broker.transportOptions`` (:func:`json_schema`) and the README's option table are derived from
:class:`BrokerOptions` or checked against it by tests, so an option cannot exist in one and not the others.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from airflow_ha.broker.errors import BrokerConfigError
from airflow_ha.broker.keys import PRIORITY_STEPS

WAIT_POLICIES = ("warn", "raise", "auto")
WAIT_ON = ("publish", "ack")


def _opt(default, doc: str, **schema):
    """A field with its one-line description and its JSON-schema bounds (type comes from the annotation)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default")
    return field(default=default, metadata={"doc": doc, "schema": schema})


@dataclass(frozen=True)
class BrokerOptions:
    visibility_timeout: float = _opt(
        86400.0,
        "Seconds a delivered, unacknowledged message stays with its consumer before it is given to another "
        "(Airflow's default; a task running longer would run twice).",
        exclusiveMinimum=0,
    )
    visibility_sweep_interval: float | None = _opt(
        None,
        "Seconds between sweeps that return overdue unacknowledged messages; default min(visibility_timeout/4, 60).",
        exclusiveMinimum=0,
    )
    poll_sweep_interval: float = _opt(
        1.0,
        "Seconds between safety reads of every consumed queue (covers wake-ups lost in a failover).",
        exclusiveMinimum=0,
    )
    socket_timeout: float = _opt(5.0, "Seconds a command to a Redis node may take.", exclusiveMinimum=0)
    socket_connect_timeout: float = _opt(3.0, "Seconds to connect to a Redis node.", exclusiveMinimum=0)
    failover_timeout: float = _opt(
        30.0,
        "Seconds a command keeps retrying redirections and connection errors through a failover before "
        "Celery's own reconnect takes over.",
        minimum=0,
    )
    replication_wait_replicas: int = _opt(
        1,
        "Replicas that must hold a write before a publish or ack returns (WAIT/WAITAOF); 0 turns it off.",
        minimum=0,
    )
    replication_wait_timeout_ms: int = _opt(
        500,
        "Milliseconds WAIT/WAITAOF waits for those replicas (below socket_timeout).",
        minimum=1,
        maximum=4999,
    )
    replication_wait_policy: str = _opt(
        "auto",
        "What a publish does when fewer replicas acknowledged: auto refuses it when the replicas are "
        "connected but silent (a partition) and carries on when the master has none left; raise always "
        "refuses; warn always carries on.",
        enum=list(WAIT_POLICIES),
    )
    replication_wait_on: tuple[str, ...] = _opt(
        ("publish",),
        "Which writes wait for replicas: publish, ack (comma-separated). An ack lost in a failover only "
        "means the message runs again, so by default only publishes wait.",
    )
    replication_wait_aof: bool = _opt(
        False,
        "Also run WAITAOF 1 0 (Redis >= 7.2, appendonly yes) after a waited write: it is on the master's disk "
        "even with appendfsync everysec (waits up to a second). The chart's Redis runs appendfsync always, "
        "which gives that without the wait.",
    )
    priority_steps: tuple[int, ...] = _opt(
        PRIORITY_STEPS, "Priority lists per queue, served lowest first (kombu's steps; comma-separated)."
    )
    max_restore_batch: int = _opt(1000, "Most overdue messages one sweep returns per queue.", minimum=1)

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
                values[f.name] = _convert(f, raw)
            except (TypeError, ValueError) as exc:
                raise BrokerConfigError(f"transport option {f.name}={raw!r}: {exc}") from None
        opts = cls(**values)
        opts._validate()
        return opts

    @classmethod
    def merged(cls, url_options: dict | None, transport_options: dict | None) -> BrokerOptions:
        """Defaults < the URL's query < ``broker_transport_options`` (what the user set in Airflow)."""
        return cls.from_mapping({**(url_options or {}), **(transport_options or {})})

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

    def as_dict(self) -> dict:
        """Every option and its value in effect (what ``airflow-ha broker-check --show-options`` prints)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _kind(f) -> str:
    """int | float | str | bool | list-of-str | list-of-int, from the annotation (a string here)."""
    text = str(f.type)
    for kind in ("bool", "int", "float", "str"):
        if text.startswith(f"tuple[{kind}"):
            return f"list-of-{kind}"
    for kind in ("bool", "int", "float", "str"):
        if text.startswith(kind):
            return kind
    raise TypeError(f"option {f.name}: unsupported type {text}")


def _convert(f, raw):
    kind = _kind(f)
    if kind.startswith("list-of-"):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        items = [i.strip() if isinstance(i, str) else i for i in items]
        if kind == "list-of-int":
            return tuple(int(i) for i in items if i != "")
        return tuple(str(i) for i in items if i != "")
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("want true or false")
    if kind == "int":
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("want an integer")
        return int(raw)
    if kind == "str":
        return str(raw).strip().lower()
    value = float(raw)
    if value != value:  # NaN
        raise ValueError("not a number")
    return value


URL_KEYS = tuple(f.name for f in fields(BrokerOptions))
"""Every option is accepted in the broker URL's query (the chart writes them there)."""


def defaults() -> dict:
    """Every option's default value (JSON-ready)."""
    return {f.name: _plain(f.default) for f in fields(BrokerOptions) if f.default is not MISSING}


def json_schema() -> dict:
    """The JSON schema of ``broker.transportOptions`` in the chart's ``values.schema.json``."""
    types = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
    properties = {}
    for f in fields(BrokerOptions):
        kind = _kind(f)
        meta = f.metadata
        if kind.startswith("list-of-"):
            item = {"type": types[kind.removeprefix("list-of-")]}
            if f.name == "replication_wait_on":
                item["enum"] = list(WAIT_ON)
            prop = {"type": "array", "items": item}
        else:
            prop = {"type": types[kind]}
            if "None" in str(f.type):
                prop = {"type": [types[kind], "null"]}
        prop.update(meta["schema"])
        prop["description"] = meta["doc"]
        properties[f.name] = prop
    return {
        "type": "object",
        "description": "Transport options of the rediscluster:// broker, written into the broker URL's query "
        "(airflow_ha.broker.options.BrokerOptions). Unset: the library's defaults.",
        "properties": properties,
        "additionalProperties": False,
    }


def docs_table() -> str:
    """The README's option table (Markdown), one row per option."""
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for f in fields(BrokerOptions):
        default = _plain(f.default)
        if isinstance(default, list):
            default = ",".join(str(d) for d in default)
        rows.append(f"| `{f.name}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m airflow_ha.broker.options [schema|table|defaults]
    import json
    import sys

    what = (sys.argv[1:] or ["table"])[0]
    if what == "schema":
        print(json.dumps(json_schema(), indent=2))
    elif what == "defaults":
        print(json.dumps(defaults(), indent=2))
    else:
        print(docs_table())
