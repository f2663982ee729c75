"""Parse and validate ``rediscluster://`` broker URLs.

Form::

    rediscluster://[[user]:password@]host1:port1[,host2:port2,...][/][?option=value&...]
    redisclusters://...                      (TLS; same as ?ssl=true)

kombu's own URL parser (``kombu.utils.url``) reads the authority as ONE ``host:port`` and fails on a
comma-separated seed list ("Port could not be cast to integer value"), so the transport declares
``can_parse_url = True``: kombu then hands the whole URL to :func:`parse` untouched, through
``kombu.Connection(url)``, Celery's ``broker_url`` and Airflow's ``[celery] broker_url`` alike.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

from airflow_ha.broker.options import URL_KEYS

SCHEMES = ("rediscluster", "redisclusters")
DEFAULT_PORT = 6379

SSL_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
# Query options accepted besides TLS ones: every transport option (one definition: BrokerOptions).
URL_TRANSPORT_OPTIONS = URL_KEYS
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class BrokerURLError(ValueError):
    """The broker URL cannot be used; the message names the part that is wrong."""


@dataclass(frozen=True)
class ClusterURL:
    seeds: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_options: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def redis_kwargs(self) -> dict:
        """Keyword arguments for redis-py clients (``redis.Redis`` / ``RedisCluster``)."""
        kwargs: dict = {"username": self.username, "password": self.password}
        if self.ssl:
            kwargs["ssl"] = True
            kwargs.update(self.ssl_options)
        return kwargs

    def as_uri(self, include_password: bool = False, mask: str = "**") -> str:
        scheme = "redisclusters" if self.ssl else "rediscluster"
        auth = ""
        if self.username or self.password:
            secret = quote(self.password or "", safe="") if include_password else mask
            auth = f"{quote(self.username or '', safe='')}:{secret}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.seeds)
        return f"{scheme}://{auth}{hosts}"


def _parse_host(item: str, url_for_errors: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise BrokerURLError(f"empty host in seed list of {url_for_errors} (stray comma?)")
    if item.startswith("["):  # [ipv6]:port
        end = item.find("]")
        if end < 0:
            raise BrokerURLError(f"unterminated IPv6 address {item!r} in {url_for_errors}")
        host, rest = item[1:end], item[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BrokerURLError(f"bad seed {item!r} in {url_for_errors}: expected [address]:port")
        port_text = rest[1:] if rest else ""
    else:
        host, sep, port_text = item.rpartition(":")
        if not sep:
            host, port_text = item, ""
    if not host:
        raise BrokerURLError(f"seed {item!r} in {url_for_errors} has no host name")
    if port_text == "":
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BrokerURLError(f"seed {item!r} in {url_for_errors} has a bad port {port_text!r} (want 1-65535)")
    return host, int(port_text)


def _bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BrokerURLError(f"option {name}={value!r} is not a boolean (true/false)")


def parse(url: str) -> ClusterURL:
    """Parse ``url``; raise :class:`BrokerURLError` naming the problem."""
    if not isinstance(url, str) or "://" not in url:  # the text is not echoed: it may hold the password
        raise BrokerURLError(
            f"not a broker URL ({type(url).__name__} without '://'): want rediscluster://[:password@]host:port,..."
        )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        shown = scheme if scheme.isascii() and scheme.replace("+", "").replace("-", "").isalnum() else "(unreadable)"
        raise BrokerURLError(f"unsupported scheme {shown!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    safe = f"{scheme}://..."  # never echo the password
    authority_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    if "@" in rest[authority_end:]:
        # e.g. rediscluster://:pa/ss@host: the password's own '/' ended the host list early; nothing after
        # this point is echoed, since any of it may be part of the password
        raise BrokerURLError(
            f"{safe}: '@' after the host list: a password (or user) containing '/', '?' or '#' must be "
            "URL-encoded (%2F, %3F, %23; also %40 for '@', %3A for ':' and %25 for '%')"
        )
    rest, _, query = rest.partition("?")
    rest, _, _fragment = rest.partition("#")
    authority, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise BrokerURLError(f"{safe}: a Redis Cluster has only database 0, got path /{path}")
    userinfo, at, hostlist = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if colon:
            username, password = unquote(user) or None, unquote(secret) or None
        else:  # rediscluster://password@host is a common slip: treat as password like redis-py does
            password = unquote(user) or None
    if not hostlist.strip():
        raise BrokerURLError(f"{safe}: no seed hosts (want host:port[,host:port...])")
    seeds = tuple(dict.fromkeys(_parse_host(h, safe) for h in hostlist.split(",")))

    use_ssl = scheme == "redisclusters"
    ssl_options: dict = {}
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "ssl":
            use_ssl = _bool(key, value) or use_ssl
        elif key == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS and value not in ("CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE"):
                raise BrokerURLError(f"ssl_cert_reqs={value!r}: want required, optional or none")
            ssl_options[key] = _CERT_REQS[value.lower().removeprefix("cert_")]
        elif key == "ssl_check_hostname":
            ssl_options[key] = _bool(key, value)
        elif key in SSL_OPTIONS:
            ssl_options[key] = value
        elif key in URL_TRANSPORT_OPTIONS:
            options[key] = value
        else:
            known = ", ".join(("ssl", *SSL_OPTIONS, *URL_TRANSPORT_OPTIONS))
            raise BrokerURLError(f"unknown option {key!r} in {safe} (known: {known})")
    if ssl_options and not use_ssl:
        raise BrokerURLError(f"{', '.join(ssl_options)} given but TLS is off: add ssl=true or use redisclusters://")
    return ClusterURL(seeds, username, password, use_ssl, ssl_options, options)
