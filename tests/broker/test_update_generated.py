"""A generated run over the update service's request space (hypothesis), over real HTTPS on loopback.

Hostnames, myip values, Authorization headers and extra query parameters are drawn from mixes of the
meaningful (the tunnels' names and keys, public, private, CGNAT, IPv6 and the server's own addresses) and
arbitrary text.  Invariants: HTTP 200 (401 and badauth without credentials) and one line whose first word is a documented dyndns2 answer; a
request answered with anything but `good` changes nothing (database rows, the applier's state), but for `nochg`,
which is written to the tunnel's update history; `good A`
leaves the tunnel at A; never a 5xx, never an INTERNAL_ERROR or a traceback in the log.  Rate limits are
off here (test_update_service.py tests them): they would turn every later example into `abuse`.
"""
import base64
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from test_broker import X
from test_update_service import Server, Y, Y2, setup, state  # noqa: F401 (setup: the fixture)

pytest.importorskip("uvicorn")

WORDS = {"good", "nochg", "badauth", "nohost", "notfqdn", "badip", "abuse", "badagent", "911"}
PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
ANY = st.text(max_size=40)

names = st.sampled_from(["home", "away", "nobody", "", "home,away", "HOME"]) | ANY
addresses = st.sampled_from([Y, Y2, "203.0.113.99", "10.0.0.1", "100.64.0.1", "127.0.0.1", "224.0.0.1",
                             "2001:db8::1", X, "", "1.2.3", "198.51.100.256"]) | ANY


@st.composite
def auth_headers(draw, keys):
    kind = draw(st.sampled_from(["none", "basic", "raw"]))
    if kind == "none":
        return None
    if kind == "raw":
        return draw(PRINTABLE)          # http.client sends header values as latin-1: printable ASCII here
    user = draw(names)
    password = draw(st.sampled_from(keys + ["x" * 22, ""]) | ANY)
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def _but_history(b):
    """state(b) without the update history's rows (test_broker.OBSERVED: what a dump leaves out)."""
    import test_broker
    observed = test_broker.OBSERVED
    test_broker.OBSERVED = observed + ("updates",)
    try:
        return state(b)
    finally:
        test_broker.OBSERVED = observed


@pytest.fixture
def service(setup):       # noqa: F811 (the fixture of test_update_service)
    b, srv, key, key2 = setup
    srv.stop()
    # limits off: every example is judged on its own, not on how many came before
    srv = Server(b.path, rate_source=(0, 1.0), rate_tunnel=(0, 1.0))
    yield b, srv, key, key2
    srv.stop()


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_request_gets_a_documented_word_and_a_refusal_changes_nothing(service, data):
    b, srv, key, key2 = service
    params = []
    if data.draw(st.booleans()):
        params.append(("hostname", data.draw(names)))
    if data.draw(st.booleans()):
        params.append(("myip", data.draw(addresses)))
    params += data.draw(st.lists(st.tuples(st.sampled_from(["system", "hostname", "myip", "x", ""]) | ANY, ANY),
                                 max_size=3))
    target = "/nic/update?" + urllib.parse.urlencode(params)
    header = data.draw(auth_headers([key, key2]))
    before, before_but_history = state(b), _but_history(b)
    status, body = srv.get(target, headers={"Authorization": header} if header is not None else None)
    # 401 only to a request with no credentials at all (the Basic challenge uclient-fetch waits for)
    assert status == (401 if header is None and body == "badauth\n" else 200), (status, body)
    assert body.endswith("\n") and body.count("\n") == 1, body
    word = body.split()[0] if body.split() else ""
    assert word in WORDS, body
    if word == "good":
        address = body.split()[1]
        user = base64.b64decode(header[6:]).decode().partition(":")[0]
        assert b.json("show", user)["tunnel"]["remote"] == address
    elif word == "nochg":
        # an authenticated nochg is written to the tunnel's update history (`show` lists it), nothing else
        assert _but_history(b) == before_but_history, (target, header, body)
    else:
        assert state(b) == before, (target, header, body)
    assert not any("INTERNAL_ERROR" in ln or "Traceback" in ln for ln in srv.lines), srv.lines[-3:]
