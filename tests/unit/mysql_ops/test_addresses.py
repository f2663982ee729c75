"""The agent's address book: names answered from memory, the last good IP kept through a DNS outage."""

from __future__ import annotations

import socket

from airflow_ha.mysql_ops.addresses import AddressBook, is_ip


class FlakyDNS:
    """A resolver whose answers the test sets; ``None`` times out like a lookup sent to a lost CoreDNS pod."""

    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str) -> str:
        self.asked.append(host)
        ip = self.answers.get(host)
        if ip is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return ip


def test_names_resolve_and_a_failed_lookup_keeps_the_last_ip():
    dns = FlakyDNS({"m0": "10.0.0.5", "m2": "10.0.0.7"})
    book = AddressBook(["m0", "m2"], lookup=dns)
    assert book.ip("m0") == "m0"  # never resolved yet: the name itself
    book.refresh()
    assert (book.ip("m0"), book.ip("m2")) == ("10.0.0.5", "10.0.0.7")
    dns.answers["m0"] = None  # DNS outage
    dns.answers["m2"] = "10.0.0.9"  # m2's pod restarted with a new IP
    book.refresh()
    assert (book.ip("m0"), book.ip("m2")) == ("10.0.0.5", "10.0.0.9")


def test_own_name_is_pinned_to_the_pod_ip_and_literals_are_never_looked_up():
    dns = FlakyDNS({"m0": "10.0.0.5"})
    book = AddressBook(["m0", "m1", "127.0.0.1", "::1"], pinned={"m1": "10.0.0.6"}, lookup=dns)
    book.refresh()
    assert dns.asked == ["m0"]
    assert (book.ip("m1"), book.ip("127.0.0.1"), book.ip("::1")) == ("10.0.0.6", "127.0.0.1", "::1")


def test_an_empty_pin_resolves_the_name():
    book = AddressBook(["m1"], pinned={"m1": ""}, lookup=FlakyDNS({"m1": "10.0.0.6"}))
    book.refresh()
    assert book.ip("m1") == "10.0.0.6"


def test_is_ip():
    assert is_ip("10.1.2.3") and is_ip("fd00::1") and is_ip("[fd00::1]")
    assert not is_ip("airflow-ha-mysql-gr-0.airflow-ha-mysql-gr")


def test_the_background_thread_resolves_at_start():
    book = AddressBook(["m0"], lookup=FlakyDNS({"m0": "10.0.0.5"}), interval=60)
    book.start()
    try:
        assert book.ip("m0") == "10.0.0.5"
    finally:
        book.stop()
