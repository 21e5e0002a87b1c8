"""core/dyndns.py on CPython and MicroPython: the answers' kinds and words, the delays, the request URL and
the uclient-fetch command line (the shell's copy of the kinds and delays is held equal to these by
tests/openwrt/test_updater.py)."""
import pytest

from sixbroker.core import addr, dyndns


@pytest.mark.parametrize("body, status, errors, want", [
    ("good 198.51.100.20\n", 0, "", ("good", "198.51.100.20")),
    ("nochg 198.51.100.20\r\n", 0, "", ("nochg", "198.51.100.20")),
    ("  good   203.0.113.7  \nextra line\n", 0, "", ("good", "203.0.113.7")),
    ("good not-an-address\n", 0, "", ("good", None)),
    ("good\n", 0, "", ("good", None)),
    ("badauth\n", 8, "HTTP error 401", ("badauth", None)),      # a word wins over the status
    ("abuse\n", 0, "", ("abuse", None)),
    ("911\n", 0, "", ("911", None)),
    ("<html>hello</html>", 0, "", ("badresponse", None)),
    ("", 0, "", ("badresponse", None)),
    (None, 127, "", ("nofetch", None)),
    ("", 5, "", ("badcert", None)),
    ("", 4, "", ("unreachable", None)),
    ("", 6, "", ("unauthorized", None)),
    ("", 1, "HTTP error 401", ("unauthorized", None)),
    ("", 8, "HTTP error 500", ("httperror", None)),
    ("", 1, "", ("unreachable", None)),
])
def test_parse_reads_dyndns2_words_and_client_failures(body, status, errors, want):
    assert dyndns.parse(body, status, errors) == want


def test_every_word_has_a_kind_and_words():
    for table in (dyndns.ANSWERS, dyndns.FAILURES):
        for word, (k, words) in table.items():
            assert k in ("ok", "config", "abuse", "later"), word
            assert dyndns.kind(word) == k and dyndns.meaning(word) == words and words, word
    assert dyndns.kind("whatever") == "later"
    assert dyndns.meaning("whatever") == dyndns.FAILURES["badresponse"][1]


@pytest.mark.parametrize("k, fails, interval, want", [
    ("ok", 0, 300, 300),
    ("ok", 0, 0, dyndns.IDLE),                      # no timer: sleep until woken
    ("config", 1, 300, dyndns.LONG_DELAY),
    ("abuse", 3, 7200, 7200),                       # never sooner than the interval
    ("later", 1, 300, 30),
    ("later", 2, 300, 60),
    ("later", 3, 300, 120),
    ("later", 4, 300, 240),
    ("later", 5, 300, 300),                         # capped by the timer
    ("later", 50, 86400, 86400),                    # doubling stops: no overflow, capped
    ("later", 9, 0, dyndns.LONG_DELAY),             # no timer: capped by LONG_DELAY
    ("later", 0, 300, 30),
])
def test_next_delay_backs_off_and_never_passes_the_timer(k, fails, interval, want):
    assert dyndns.next_delay(k, fails, interval) == want


@pytest.mark.parametrize("text, public", [
    ("198.51.100.20", True), ("203.0.113.7", True), ("8.8.8.8", True),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.2", False), ("100.64.0.1", False),
    ("127.0.0.1", False), ("169.254.1.1", False),
])
def test_myip_only_for_a_public_address(text, public):
    assert dyndns.is_public(addr.Address.parse(text, 4)) is public


def test_urls():
    assert dyndns.default_url("home", "vps.example.org") == "https://vps.example.org:8443/nic/update"
    assert dyndns.default_url("123456", "216.66.80.26") == dyndns.HE_URL
    assert dyndns.request_url("https://b:8443/nic/update", "home") == "https://b:8443/nic/update?hostname=home"
    assert (dyndns.request_url("https://b/u?x=1", "a b&c/é", addr.Address.parse("198.51.100.20", 4))
            == "https://b/u?x=1&hostname=a%20b%26c%2F%C3%A9&myip=198.51.100.20")


def test_fetch_argv_carries_no_key_and_forces_ipv4():
    assert dyndns.fetch_argv("home") == ["uclient-fetch", "-4", "-O", "-", "-T", "20", "--user=home"]
    argv = dyndns.fetch_argv("home", "/etc/sixbroker/broker.pem", timeout=5)
    assert argv[-1] == "--ca-certificate=/etc/sixbroker/broker.pem" and "-T" in argv and "5" in argv
    assert not [a for a in argv if "password" in a]
