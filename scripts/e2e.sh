#!/usr/bin/env bash
# Against a live `ebb dev`: the Cobo SDK compatibility tour, then schemathesis over /v2/openapi.json
# through a signing proxy. Expects the Python tools in $PY (default target/pyenv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-target/pyenv/bin}
EBB=${EBB:-target/debug/ebb}
SCHEMATHESIS_SECONDS=${SCHEMATHESIS_SECONDS:-150}

free_port() { "$PY/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d)
port=$(free_port)
"$EBB" dev --listen "127.0.0.1:$port" --data-dir "$data" > "$data/ebb.log" 2>&1 &
ebb_pid=$!
proxy_pid=""
cleanup() { kill "$ebb_pid" ${proxy_pid:+"$proxy_pid"} 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -f "$data/dev.json" ] && break; sleep 0.1; done
[ -f "$data/dev.json" ] || { cat "$data/ebb.log"; echo "ebb dev did not start"; exit 1; }

echo "== Cobo SDK compatibility (cobo-waas2, unmodified)"
"$PY/python" scripts/tour.py "$data"

echo "== the demo refund link ebb dev printed opens"
demo=""
for _ in $(seq 150); do
  demo=$(grep -o 'http://[^ ]*/refund-link?token=[A-Za-z0-9_-]*' "$data/ebb.log" | head -1 || true)
  [ -n "$demo" ] && break; sleep 0.2
done
[ -n "$demo" ] || { cat "$data/ebb.log"; echo "ebb dev printed no demo refund link"; exit 1; }
curl -fsS "$demo" | grep -q 'Refund from Demo Merchant' || { echo "the demo link did not open: $demo"; exit 1; }
echo "ok: $demo"

echo "== the refund page in headless Chromium (screenshots in target/screenshots/refund-link)"
"$PY/python" scripts/make_refund_links.py "$data" 2 > "$data/links.json"
node scripts/browser/refund_link.mjs "$data/links.json" target/screenshots/refund-link

echo "== the operator console in headless Chromium (screenshots in target/screenshots/console)"
"$PY/python" scripts/console_fixtures.py make "$data" > "$data/console.json"
setup_url=$("$EBB" operators add --email approver@console.example --role approver --data-dir "$data" \
  | grep -o 'http://[^ ]*/console/setup?token=[A-Za-z0-9_-]*')
[ -n "$setup_url" ] || { echo "ebb operators add printed no set-up link"; exit 1; }
node scripts/browser/console.mjs "$data/console.json" "$setup_url" target/screenshots/console
"$PY/python" scripts/console_fixtures.py check "$data" "$data/console.json" target/screenshots/console/refunds.csv

# schemathesis over ebb dev's OpenAPI document, through a signing proxy; ebb must log no ERROR line.
schemathesis_against() { # DATA_DIR PORT
  local secret pport
  secret=$("$PY/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_secret"])' "$1/dev.json")
  pport=$(free_port)
  "$PY/python" scripts/signing_proxy.py "$pport" "http://127.0.0.1:$2" "$secret" &
  proxy_pid=$!
  sleep 0.5
  # One worker: Python 3.11's ast module can raise "AST constructor recursion depth mismatch" when two
  # threads parse at once (CPython gh-106905), which Hypothesis does inside schemathesis' workers.
  "$PY/schemathesis" run "http://127.0.0.1:$2/v2/openapi.json" --url "http://127.0.0.1:$pport" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-time "$SCHEMATHESIS_SECONDS" --workers 1 --phases examples,coverage,fuzzing,stateful \
    --suppress-health-check all --warnings off
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
  if grep -q 'ERROR' "$1/ebb.log"; then
    echo "ebb logged errors during the run:"; grep 'ERROR' "$1/ebb.log" | head -20; exit 1
  fi
}

echo "== schemathesis against /v2/openapi.json on SQLite (${SCHEMATHESIS_SECONDS}s)"
schemathesis_against "$data" "$port"

echo "== schemathesis against /v2/openapi.json on PostgreSQL (${SCHEMATHESIS_SECONDS}s)"
pg_url=${EBB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
pg_db="ebb_e2e_$(date +%s)_$$"
psql -q "$pg_url" -c "CREATE DATABASE $pg_db"
pg_data=$(mktemp -d)
pg_port=$(free_port)
"$EBB" dev --listen "127.0.0.1:$pg_port" --data-dir "$pg_data" --database-url "${pg_url%/*}/$pg_db" \
  > "$pg_data/ebb.log" 2>&1 &
pg_ebb_pid=$!
cleanup() {
  kill "$ebb_pid" "$pg_ebb_pid" ${proxy_pid:+"$proxy_pid"} 2>/dev/null || true; wait 2>/dev/null || true
  psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" || true
}
for _ in $(seq 100); do [ -f "$pg_data/dev.json" ] && break; sleep 0.1; done
[ -f "$pg_data/dev.json" ] || { cat "$pg_data/ebb.log"; echo "ebb dev on PostgreSQL did not start"; exit 1; }
schemathesis_against "$pg_data" "$pg_port"
