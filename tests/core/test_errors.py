from sixbroker.core.errors import CODES, SixbrokerError, ConfigErrors


def test_codes_are_stable_identifiers():
    for code, text in CODES.items():
        assert code == code.upper() and " " not in code, code
        assert text and "\n" not in text, code


def test_error_carries_code_and_words():
    e = SixbrokerError("INVALID_MTU", "abc", option="mtu")
    assert e.code == "INVALID_MTU" and e.option == "mtu"
    assert str(e) == CODES["INVALID_MTU"] + ": abc"


def test_config_errors_keep_every_code():
    errs = ConfigErrors([SixbrokerError("INVALID_MTU"), SixbrokerError("INVALID_TTL")])
    assert errs.codes() == ["INVALID_MTU", "INVALID_TTL"]
    assert CODES["INVALID_TTL"] in str(errs)
