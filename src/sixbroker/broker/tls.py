"""The update service's own certificate: made once (self-signed, EC P-256), found beside the database, fingerprinted.

A broker with a certificate from a CA (certbot) gives `serve --cert --key` and routers need nothing; one
without gets this one, which `init` makes and `info` fingerprints, and which the join line carries to the
routers (uclient-fetch --ca-certificate).  P-256 keeps the certificate short (about 400 bytes of DER), and
so the join line.  openssl(1) makes it, run with an argument list: the stdlib has no X.509 writer, and
the `cryptography` wheel would be a large dependency for a file made once.

The file is on this host only; several PoPs sharing a database each have their own.  publish() puts what
routers are given of it into the database, so that `add --pop` and `move` on any PoP can print another
PoP's updater: each PoP's `init` (which makes or remakes it) and `serve` publish theirs.
"""

import base64
import hashlib
import os
import shutil
import ssl
import subprocess

from sixbroker.broker import db
from sixbroker.core.errors import SixbrokerError

CERT = "tls-cert.pem"
KEY = "tls-key.pem"
DAYS = 3650


def paths(db_path):
    d = os.path.dirname(os.path.abspath(db_path))
    return os.path.join(d, CERT), os.path.join(d, KEY)


def ensure(db_path, public_ipv4):
    """(cert, key, made) beside the database: made now when missing, and made anew when the one there
    is self-signed for another address (the VPS renumbered: `init --public-ipv4`); a certificate a CA
    signed that was put there is never replaced."""
    cert, key = paths(db_path)
    if os.path.exists(cert) and os.path.exists(key):
        if not _self_signed(cert) or addresses(cert) in ([], [public_ipv4]):
            return cert, key, False
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SixbrokerError("TLS_CERT_FAIL", "openssl is not installed (apt-get install openssl)")
    tmp_key = key + ".new"
    try:
        # the key file exists 0600 before openssl writes into it
        fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        p = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", tmp_key, "-out", cert + ".new", "-days", str(DAYS),
                            "-subj", "/CN=" + public_ipv4, "-addext", "subjectAltName=IP:" + public_ipv4],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise SixbrokerError("TLS_CERT_FAIL", (p.stderr.strip().splitlines() or ["openssl failed"])[-1])
        os.chmod(tmp_key, 0o600)
        os.replace(tmp_key, key)
        os.replace(cert + ".new", cert)
    except OSError as e:
        raise SixbrokerError("TLS_CERT_FAIL", "%s: %s" % (e.filename or cert, e.strerror or e))
    finally:
        for p in (tmp_key, cert + ".new"):
            if os.path.exists(p):
                os.unlink(p)
    return cert, key, True


def der(cert_path):
    try:
        with open(cert_path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())
    except (OSError, ValueError) as e:
        raise SixbrokerError("TLS_CERT_FAIL", "%s: %s" % (cert_path, e))


def fingerprint(cert_path):
    """SHA-256 of the certificate's DER, lowercase hex (openssl x509 -fingerprint -sha256 without colons)."""
    return hashlib.sha256(der(cert_path)).hexdigest()


def for_join(cert_path):
    """{"fp", "cert"} for the join line: the certificate itself only when it is self-signed (a CA-signed
    one is checked by the router's own CA store)."""
    d = der(cert_path)
    out = {"fp": hashlib.sha256(d).hexdigest()}
    if _self_signed(cert_path):
        out["cert"] = base64.b64encode(d).decode()
    return out


def addresses(cert_path):
    """The IP addresses the certificate names (subjectAltName)."""
    try:
        info = ssl._ssl._test_decode_cert(cert_path)
    except Exception:
        return []
    return [v for k, v in info.get("subjectAltName", ()) if k == "IP Address"]


def _self_signed(cert_path):
    try:
        info = ssl._ssl._test_decode_cert(cert_path)
    except Exception:
        return True
    return info.get("subject") == info.get("issuer")


def publish(conn, cert_path):
    """This PoP's certificate at cert_path, as for_join gives it, into the database (db.set_pop_cert;
    written only when it differs).  Whether it was written; False without a certificate file."""
    if not os.path.exists(cert_path):
        return False
    j = for_join(cert_path)
    return db.set_pop_cert(conn, j["fp"], j.get("cert"))
