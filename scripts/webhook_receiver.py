#!/usr/bin/env python3
"""A webhook receiver for trying ebb out: prints every event and checks its Cobo signature.

    python3 scripts/webhook_receiver.py [--port 9000] [--data-dir .ebb]
    ebb webhooks add --url http://127.0.0.1:9000/hook      # in another terminal, with `ebb dev` running

The signature check needs PyNaCl (`pip install pynacl`; the cobo-waas2 SDK brings it). It verifies as
Cobo's `server_demo.py` does: Ed25519 over sha256(sha256(f"{raw_body}|{Biz-Timestamp}")) with the
server's public key from DATA_DIR/dev.json, and refuses a timestamp more than 5 minutes off.
"""
import argparse
import hashlib
import http.server
import json
import time
from pathlib import Path

try:
    from nacl.signing import VerifyKey
except ImportError:  # the receiver still prints events, unverified
    VerifyKey = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--data-dir", default=".ebb")
    args = parser.parse_args()
    public_key = json.loads((Path(args.data_dir) / "dev.json").read_text())["server_public_key"]
    verify_key = VerifyKey(bytes.fromhex(public_key)) if VerifyKey else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            timestamp = self.headers.get("Biz-Timestamp", "0")
            signature = self.headers.get("Biz-Resp-Signature", "")
            verdict = "unverified (pip install pynacl)"
            if verify_key:
                digest = hashlib.sha256(hashlib.sha256(f"{raw.decode()}|{timestamp}".encode()).digest()).digest()
                try:
                    verify_key.verify(digest, bytes.fromhex(signature))
                    fresh = abs(time.time() * 1000 - int(timestamp)) < 5 * 60 * 1000
                    verdict = "signature ok" if fresh else "signature ok, but the timestamp is stale"
                except Exception:
                    verdict = "BAD SIGNATURE"
            event = json.loads(raw)
            data = event.get("data", {})
            subject = data.get("refund_id") or data.get("order_id") or data.get("transaction_id")
            print(f"{event['type']:34} {subject} {data.get('status')}  seq {event.get('sequence')}  [{verdict}]",
                  flush=True)
            self.send_response(200 if verdict != "BAD SIGNATURE" else 401)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    print(f"listening on http://127.0.0.1:{args.port}/hook", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
