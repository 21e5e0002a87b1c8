"""core/updaterecord.py on CPython and MicroPython: a record written, read back with the answer in words;
damaged, hostile or oversized files read as what they are."""
import os

from sixbroker.core import dyndns, updaterecord

_DIR = "/tmp/sixbroker-core-test-updaterecord"


def _fresh(name):
    try:
        os.mkdir(_DIR)
    except OSError:
        pass
    path = _DIR + "/" + name
    for p in (path, path + ".new"):
        try:
            os.remove(p)
        except OSError:
            pass
    return path


def test_written_and_read_back():
    path = _fresh("wan6.update")
    rec = {"time": 1700000000, "word": "good", "address": "198.51.100.20", "kind": "ok", "status": 0,
           "fails": 0, "next": 1700000300, "interval": 300, "follow": "wan", "url": "https://b:8443/nic/update"}
    updaterecord.write(path, rec)
    got = updaterecord.read(path)
    for k in updaterecord.FIELDS:
        assert got[k] == rec[k], k
    assert got["words"] == dyndns.ANSWERS["good"][1]
    try:
        open(path + ".new").close()
        left = True
    except OSError:
        left = False
    assert not left                              # written aside and renamed


def test_no_file_is_none():
    assert updaterecord.read(_fresh("none.update")) is None


def test_malformed_values_are_none_and_words_are_cleaned():
    rec = updaterecord.parse("time=12x\nword=badauth\naddress=10.0.0.999\nfails=-1\nnext=\n"
                             "follow=wan\x1b[31m\nurl=" + "u" * 300 + "\nword=good\nnoise\n")
    assert rec["time"] is None and rec["fails"] is None and rec["next"] is None
    assert rec["address"] is None
    assert rec["word"] == "badauth" and rec["kind"] == "config"          # the first word= counts
    assert rec["words"] == dyndns.ANSWERS["badauth"][1]
    assert rec["follow"] == "wan[31m" and len(rec["url"]) == 200


def test_an_unknown_word_reads_as_a_bad_response():
    rec = updaterecord.parse("word=hello\n")
    assert rec["kind"] == "later" and rec["words"] == dyndns.FAILURES["badresponse"][1]
    assert updaterecord.parse("")["word"] is None and updaterecord.parse("")["words"] is None


def test_an_oversized_file_is_not_a_record():
    path = _fresh("big.update")
    with open(path, "w") as f:
        f.write("word=good\n" + "x" * updaterecord.MAX_BYTES)
    assert updaterecord.read(path) is None
