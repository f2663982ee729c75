"""Status records name the shard group and the process that poked; counters per group and per process."""

from airflow_ha.sensors.status import PokeRecord, StatusStore, shard_key


class FakePipeline:
    def __init__(self, data: dict):
        self.data, self.ops = data, []

    def hset(self, key, mapping):
        self.ops.append(lambda: self.data.setdefault(key, {}).update({k: str(v) for k, v in mapping.items()}))

    def hincrby(self, key, field, amount):
        def incr():
            row = self.data.setdefault(key, {})
            row[field] = str(int(row.get(field, 0)) + amount)

        self.ops.append(incr)

    def expire(self, key, seconds):
        pass

    def hgetall(self, key):
        self.ops.append(lambda: dict(self.data.get(key, {})))

    def execute(self):
        return [op() for op in self.ops]


class FakeRedis:
    def __init__(self):
        self.data: dict = {}

    def pipeline(self, transaction=False):
        return FakePipeline(self.data)


def _record(code: int, replica: str) -> PokeRecord:
    return PokeRecord(code, "file", f"file /m/{code}", "shard-0", 100.0, False, "no file", 3, replica)


def test_two_replicas_of_a_group_count_apart_and_together():
    store = StatusStore(FakeRedis())
    store.record([_record(1, "shard-0-a"), _record(2, "shard-0-a")], "shard-0", {"file": 1}, "shard-0-a")
    store.record([_record(1, "shard-0-b")], "shard-0", {"file": 1}, "shard-0-b")
    counters = store.shard_counters(["shard-0", "shard-0@shard-0-a", "shard-0@shard-0-b"])
    assert counters["shard-0"] == {"pokes:file": 3, "batches:file": 2}
    assert counters["shard-0@shard-0-a"] == {"pokes:file": 2, "batches:file": 1}
    assert counters["shard-0@shard-0-b"] == {"pokes:file": 1, "batches:file": 1}
    records = store.read([1, 2])
    assert records[1]["pokes"] == "2" and records[1]["replica"] == "shard-0-b"  # last poker, every poke
    assert records[2]["shard"] == "shard-0" and records[2]["replica"] == "shard-0-a"


def test_without_a_replica_only_the_group_counts():
    store = StatusStore(FakeRedis())
    store.record([_record(1, "")], "shard-0", {"file": 1})
    assert set(store.client.data) == {"airflow-ha:sensor:{1}", shard_key("shard-0")}


def test_the_list_shows_a_slow_a_retrying_and_a_failed_target_as_such():
    store = StatusStore(FakeRedis())
    states = {1: "slow", 2: "retrying", 3: "failed", 4: ""}
    store.record(
        [
            PokeRecord(c, "file", f"file /m/{c}", "shard-0", 1.0, False, "x", 1, "r", state)
            for c, state in states.items()
        ],
        "shard-0",
        {"file": 1},
    )
    shown = {code: row["last_result"] for code, row in store.read(states).items()}
    assert shown == {1: "slow", 2: "retrying", 3: "failed", 4: "waiting"}
