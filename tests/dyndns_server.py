"""A small dyndns2 server for the updater's tests: HTTPS on loopback with a self-signed certificate the
test makes, answering like Hurricane Electric's /nic/update (a stand-in until the tests point at
`sixbroker server serve`).

Like HE and like every Basic-auth server uclient-fetch and wget can talk to: a request without
credentials gets 401 with a `WWW-Authenticate: Basic` challenge (both clients send credentials only
after one: uclient-http.c uclient_http_headers_complete, wget's --auth-no-challenge default), wrong
credentials get 401 `badauth`; then `nohost`, `good A`, `nochg A` as dyndns2 says.
"""

import base64
import http.server
import ssl
import subprocess
import threading


def make_cert(directory, name="127.0.0.1"):
    """(cert, key) paths: a self-signed certificate for the IP address name, made by openssl."""
    cert, key = str(directory / "broker.pem"), str(directory / "broker.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=IP:" + name], check=True, capture_output=True)
    return cert, key


class Server:
    def __init__(self, tunnels, cert=None, key=None, host="127.0.0.1"):
        self.tunnels = dict(tunnels)        # name -> key
        self.addresses = {}                 # name -> address the server has
        self.requests = []                  # (path, user or None, answer)
        self.forced = None                  # an answer to give whatever is asked (e.g. "911")
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                code, body, user = server.answer(self)
                server.requests.append((self.path, user, body.strip()))
                self.send_response(code)
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="sixbroker"')
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = "%s://%s:%d/nic/update" % ("https" if cert else "http", host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, req):
        from urllib.parse import parse_qs, urlsplit
        q = parse_qs(urlsplit(req.path).query)
        auth = req.headers.get("Authorization") or ""
        if not auth.startswith("Basic "):
            return 401, "badauth\n", None
        user, _, key = base64.b64decode(auth[6:]).decode("utf-8", "replace").partition(":")
        if self.forced:
            return 200, self.forced + "\n", user
        host = (q.get("hostname") or [""])[0]
        if self.tunnels.get(user) != key:
            return 401, "badauth\n", user
        if host not in self.tunnels or host != user:
            return 200, "nohost\n", user
        a = (q.get("myip") or [req.client_address[0]])[0]
        if self.addresses.get(host) == a:
            return 200, "nochg %s\n" % a, user
        self.addresses[host] = a
        return 200, "good %s\n" % a, user

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
