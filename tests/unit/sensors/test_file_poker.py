import pytest

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.pokers import FilePoker, get_poker


def test_one_listing_answers_every_target_in_a_directory(tmp_path, monkeypatch):
    (tmp_path / "edw.0001.job").touch()
    (tmp_path / "extract_20261124.csv").touch()
    listings = []
    real_listdir = __import__("os").listdir
    monkeypatch.setattr("airflow_ha.sensors.pokers.os.listdir", lambda d: listings.append(d) or real_listdir(d))
    poker = FilePoker()
    targets = [
        poker.validate({"path": str(tmp_path / "edw.0001.job")}),
        poker.validate({"path": str(tmp_path / "edw.0002.job")}),
        poker.validate({"path": str(tmp_path / "extract_*.csv")}),
    ]
    results = poker.poke_batch(targets)
    assert [r.ready for r in results] == [True, False, True]
    assert "no edw.0002.job" in results[1].detail
    assert listings == [str(tmp_path)]


def test_missing_directory_is_waiting_not_error(tmp_path):
    poker = FilePoker()
    [result] = poker.poke_batch([poker.validate({"path": str(tmp_path / "nope" / "a.job")})])
    assert not result.ready and not result.error and "does not exist" in result.detail


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"path": "relative/a.job"}, "must be absolute"),
        ({"path": "/data/*/a.job"}, "glob in a directory"),
        ({"path": ""}, "'path' must be a non-empty string"),
        ({"path": "/a", "mode": "x"}, r"unknown field\(s\) \['mode'\]"),
    ],
)
def test_bad_file_targets(target, message):
    with pytest.raises(SensorConfigError, match=message):
        FilePoker().validate(target)


def test_unknown_kind_lists_known_ones():
    with pytest.raises(SensorConfigError, match="unknown smart sensor kind 'ftp'; known kinds: file, job_history, sql"):
        get_poker("ftp")


def test_job_history_validation():
    poker = get_poker("job_history")
    ok = {"conn_id": "edw_db", "table": "edw.job_history", "job": "edw.0001", "business_date": "2026-11-24"}
    assert poker.validate(ok) == ok
    with pytest.raises(SensorConfigError, match="not a plain SQL identifier"):
        poker.validate({**ok, "table": "t; drop table x"})
    with pytest.raises(SensorConfigError, match="is not YYYY-MM-DD"):
        poker.validate({**ok, "business_date": "24/11/2026"})


@pytest.mark.parametrize(
    ("error", "permanent", "detail"),
    [
        (PermissionError(13, "Permission denied"), True, "no permission to list"),
        (OSError(5, "Input/output error"), False, "poked again next interval"),  # a mount that is away
        (OSError(116, "Stale file handle"), False, "poked again next interval"),
    ],
)
def test_listing_errors_are_permanent_only_when_waiting_cannot_help(tmp_path, monkeypatch, error, permanent, detail):
    def listdir(_directory):
        raise error

    monkeypatch.setattr("airflow_ha.sensors.pokers.os.listdir", listdir)
    poker = FilePoker()
    [result] = poker.poke_batch([poker.validate({"path": str(tmp_path / "a.job")})])
    assert not result.ready and result.error and result.permanent is permanent and detail in result.detail
    assert result.state == ("failed" if permanent else "retrying")
