"""GTID sets as MySQL prints them (``@@gtid_executed``), with the subset test the reboot decision needs.

``3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11-18,uuid2:1-3`` and, since MySQL 8.3, tagged GTIDs
``uuid:tag:1-5`` (a tag applies to the intervals after it, up to the next tag). Whitespace and newlines
(MySQL breaks long sets after the commas) are ignored; UUIDs and tags compare case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_INTERVAL = re.compile(r"^(\d+)(?:-(\d+))?$")
_TAG = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")


class GtidSetError(ValueError):
    pass


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


@dataclass(frozen=True)
class GtidSet:
    """{(uuid, tag): sorted disjoint closed intervals}; tag "" for untagged GTIDs."""

    sids: dict[tuple[str, str], tuple[tuple[int, int], ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> GtidSet:
        text = "".join((text or "").split()).lower()
        found: dict[tuple[str, str], list[tuple[int, int]]] = {}
        if not text:
            return cls({})
        for part in text.split(","):
            if not part:
                continue
            uuid, *rest = part.split(":")
            if not _UUID.match(uuid):
                raise GtidSetError(f"not a GTID set (bad UUID {uuid!r}): {text[:200]}")
            tag = ""
            for item in rest:
                m = _INTERVAL.match(item)
                if m:
                    lo = int(m.group(1))
                    hi = int(m.group(2) or lo)
                    if lo < 1 or hi < lo:
                        raise GtidSetError(f"bad GTID interval {item!r} in {text[:200]}")
                    found.setdefault((uuid, tag), []).append((lo, hi))
                elif _TAG.match(item):
                    tag = item
                else:
                    raise GtidSetError(f"bad GTID interval or tag {item!r} in {text[:200]}")
        return cls({k: _merge(v) for k, v in found.items() if v})

    def __bool__(self) -> bool:
        return bool(self.sids)

    def __len__(self) -> int:
        """How many transactions the set holds."""
        return sum(hi - lo + 1 for ivs in self.sids.values() for lo, hi in ivs)

    def union(self, other: GtidSet) -> GtidSet:
        keys = set(self.sids) | set(other.sids)
        return GtidSet({k: _merge([*self.sids.get(k, ()), *other.sids.get(k, ())]) for k in keys})

    __or__ = union

    def issubset(self, other: GtidSet) -> bool:
        for key, intervals in self.sids.items():
            theirs = other.sids.get(key, ())
            for lo, hi in intervals:
                if not any(olo <= lo and hi <= ohi for olo, ohi in theirs):
                    return False
        return True

    def __le__(self, other: GtidSet) -> bool:
        return self.issubset(other)

    def __ge__(self, other: GtidSet) -> bool:
        return other.issubset(self)

    def __str__(self) -> str:
        by_uuid: dict[str, list[str]] = {}
        for (uuid, tag), intervals in sorted(self.sids.items()):
            text = ":".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in intervals)
            by_uuid.setdefault(uuid, []).append(f"{tag}:{text}" if tag else text)
        return ",".join(f"{uuid}:{':'.join(parts)}" for uuid, parts in by_uuid.items())
