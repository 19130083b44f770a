#!/usr/bin/env python3
"""A local HTTP proxy that signs every request as Cobo's SDK does, for tools that cannot sign
(schemathesis). Usage: signing_proxy.py LISTEN_PORT UPSTREAM_BASE API_SECRET_HEX

It forwards method, path, query and body unchanged, adds Biz-Api-Key / Biz-Api-Nonce /
Biz-Api-Signature over exactly those bytes, and returns the upstream response as it came.
"""
import hashlib
import http.client
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from nacl.signing import SigningKey

PORT, UPSTREAM, SECRET = int(sys.argv[1]), urlsplit(sys.argv[2]), sys.argv[3]
KEY = SigningKey(bytes.fromhex(SECRET))
API_KEY = bytes(KEY.verify_key).hex()
_lock = threading.Lock()
_last = 0


def next_nonce() -> str:
    # Strictly increasing milliseconds, so no two requests share a signature (a replay to ebb).
    global _last
    with _lock:
        _last = max(int(time.time() * 1000), _last + 1)
        return str(_last)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        nonce = next_nonce()
        message = "|".join((self.command, path, nonce, query, body.decode("utf-8", "surrogateescape"))).encode("utf-8", "surrogateescape")
        digest = hashlib.sha256(hashlib.sha256(message).digest()).digest()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        headers.update({"Biz-Api-Key": API_KEY, "Biz-Api-Nonce": nonce, "Biz-Api-Signature": KEY.sign(digest).signature.hex()})
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def __getattr__(self, name):
        # Every method, even ones http.server has never heard of (TRACE, QUERY), goes to ebb.
        if name.startswith("do_"):
            return self._forward
        raise AttributeError(name)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
