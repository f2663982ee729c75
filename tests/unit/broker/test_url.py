"""rediscluster:// URL parsing: seeds, credentials, TLS options and the error messages."""

from __future__ import annotations

import re
import ssl
from urllib.parse import quote

import pytest
from kombu import Connection

import airflow_ha.broker
from airflow_ha.broker.url import BrokerURLError, parse


def test_seed_list_password_and_default_port():
    url = parse("rediscluster://:s3cr%40t@10.0.0.1:7000,redis-1:7001,redis-2")
    assert url.seeds == (("10.0.0.1", 7000), ("redis-1", 7001), ("redis-2", 6379))
    assert url.password == "s3cr@t"
    assert url.username is None
    assert not url.ssl


def test_user_and_ipv6_and_duplicate_seeds():
    url = parse("rediscluster://app:pw@[::1]:7000,[::1]:7000,h:1/0")
    assert url.seeds == (("::1", 7000), ("h", 1))
    assert (url.username, url.password) == ("app", "pw")


def test_tls_by_scheme_and_by_option():
    secure = parse("redisclusters://:pw@h:1?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem")
    assert secure.ssl
    assert secure.ssl_options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert secure.redis_kwargs()["ssl"] is True
    assert parse("rediscluster://h:1?ssl=true&ssl_cert_reqs=none").ssl_options["ssl_cert_reqs"] == ssl.CERT_NONE


def test_transport_options_in_query():
    assert parse("rediscluster://h:1?visibility_timeout=30").options == {"visibility_timeout": "30"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rediscluster://", "no seed hosts"),
        ("rediscluster://:pw@", "no seed hosts"),
        ("rediscluster://h1:1,,h2:2", "empty host"),
        ("rediscluster://h1:port", "bad port 'port'"),
        ("rediscluster://h1:70000", "bad port '70000'"),
        ("rediscluster://:7000", "has no host name"),
        ("rediscluster://[::1:7000", "unterminated IPv6"),
        ("redis-cluster://h:1", "unsupported scheme"),
        ("h1:1,h2:2", "not a broker URL"),
        ("rediscluster://h:1/3", "only database 0"),
        ("rediscluster://h:1?colour=red", "unknown option 'colour'"),
        ("rediscluster://h:1?ssl=maybe", "not a boolean"),
        ("rediscluster://h:1?ssl_cert_reqs=required", "TLS is off"),
        ("redisclusters://h:1?ssl_cert_reqs=sometimes", "want required, optional or none"),
    ],
)
def test_errors_name_the_problem(url, message):
    with pytest.raises(BrokerURLError, match=message):
        parse(url)


def test_error_never_echoes_password():
    with pytest.raises(BrokerURLError) as info:
        parse("rediscluster://:topsecret@h1:bad")
    assert "topsecret" not in str(info.value)


def test_masked_uri_round_trips():
    url = parse("rediscluster://:pw@a:1,b:2")
    assert url.as_uri() == "rediscluster://:**@a:1,b:2"
    assert parse(url.as_uri(include_password=True)) == url


def test_kombu_connection_keeps_the_seed_list_and_masks_the_password():
    """kombu's own parser would choke on the comma list; can_parse_url hands the URL over untouched."""
    airflow_ha.broker.register()
    conn = Connection("rediscluster://:pw@a:1,b:2,c:3")
    assert conn.transport_cls == "rediscluster"
    assert conn.transport.url.seeds == (("a", 1), ("b", 2), ("c", 3))
    assert conn.as_uri() == "rediscluster://:**@a:1,b:2,c:3"
    assert "pw" not in repr(conn)


def test_celery_accepts_the_url():
    from celery import Celery

    app = Celery("t", broker="rediscluster://:pw@a:1,b:2", set_as_current=False)
    conn = app.connection_for_write()
    assert conn.transport.url.seeds == (("a", 1), ("b", 2))
    assert conn.transport.url.password == "pw"


# -- the password never shows in an error; special characters work URL-encoded ------------------------------------
SECRET = "S3cr3t/pa:ss@w%rd"
SECRET_Q = quote(SECRET, safe="")  # S3cr3t%2Fpa%3Ass%40w%25rd


def _fragments(text: str, n: int = 3) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


# Every 3-character piece of the password, raw or encoded; a bare escape such as "%2F" tells nothing about it
FRAGMENTS = _fragments(SECRET) | {f for f in _fragments(SECRET_Q) if not re.fullmatch(r"%[0-9A-F]{2}", f)}

BROKEN = [
    f"rediscluster://:{SECRET}@h1:1",  # raw: its '/' ends the host list early
    f"rediscluster://:{SECRET}@h1:1,h2:2",
    f"rediscluster://user:{SECRET}@h1:bad",
    f"rediscluster://:{SECRET}",
    f"rediscluster://:{SECRET.replace('/', '')}@h1:bad",  # raw '@' ':' '%' without '/'
    f"rediscluster://:{SECRET_Q}@h1:bad",
    f"rediscluster://:{SECRET_Q}@h1:70000",
    f"rediscluster://:{SECRET_Q}@h1:1,,h2:2",
    f"rediscluster://:{SECRET_Q}@:7000",
    f"rediscluster://:{SECRET_Q}@[::1:7000",
    f"rediscluster://:{SECRET_Q}@[::1]x:7000",
    f"rediscluster://:{SECRET_Q}@",
    f"rediscluster://:{SECRET_Q}@h:1/3",
    f"rediscluster://:{SECRET_Q}@h:1?colour=red",
    f"rediscluster://:{SECRET_Q}@h:1?ssl=maybe",
    f"rediscluster://:{SECRET_Q}@h:1?ssl_cert_reqs=required",
    f"redisclusters://:{SECRET_Q}@h:1?ssl_cert_reqs=sometimes",
    f"redis-cluster://:{SECRET_Q}@h:1",
    f"rediscl{SECRET}://h:1",
    f":{SECRET_Q}@h1:1,h2:2",
    f":{SECRET}@h1:1",
    SECRET,
]


def _chain(exc: BaseException) -> str:
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


@pytest.mark.parametrize("url", BROKEN, ids=range(len(BROKEN)))
def test_url_errors_never_echo_any_part_of_the_password(url):
    with pytest.raises(BrokerURLError) as info:
        parse(url)
    text = _chain(info.value)
    leaked = sorted(f for f in FRAGMENTS if f in text)
    assert not leaked, f"{text!r} leaks {leaked}"


@pytest.mark.parametrize("url", BROKEN[:6], ids=range(6))
def test_kombu_connection_with_a_broken_url_never_echoes_the_password(url):
    airflow_ha.broker.register()
    with pytest.raises(BrokerURLError) as info:
        Connection(url).connect()
    text = _chain(info.value)
    assert not [f for f in FRAGMENTS if f in text], text


@pytest.mark.parametrize("password", [SECRET, "p@ss", "p:ss", "p/ss", "p%ss", "%40", "a:b@c/d%e?f#g", "@:/%"])
def test_passwords_with_at_colon_slash_percent_work_url_encoded(password):
    encoded = quote(password, safe="")
    url = parse(f"rediscluster://:{encoded}@h1:1,h2:2?visibility_timeout=10")
    assert url.password == password and url.username is None
    assert url.seeds == (("h1", 1), ("h2", 2)) and url.options == {"visibility_timeout": "10"}
    with_user = parse(f"rediscluster://app:{encoded}@h1:1")
    assert (with_user.username, with_user.password) == ("app", password)
    assert parse(url.as_uri(include_password=True)) == parse(f"rediscluster://:{encoded}@h1:1,h2:2")
    assert password not in url.as_uri() and url.redis_kwargs()["password"] == password
