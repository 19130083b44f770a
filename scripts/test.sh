#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs
#   1. unit tests and the integration suite (every test on SQLite and on PostgreSQL; payouts on the
#      sandbox chain and on anvil, a real EVM node, with a test ERC-20),
#   2. the one test that restarts PostgreSQL, alone (crates/ebb/tests/api/faults.rs),
#   3. a one-minute soak on PostgreSQL (bench/src/soak/),
#   4. the Cobo SDK compatibility tour and schemathesis against a live `ebb dev` (scripts/e2e.sh).
# With CI=true a missing service is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

step "PostgreSQL at 127.0.0.1:5432"
export EBB_TEST_POSTGRES_URL=${EBB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "up"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable and CI=true: failing"; exit 1
else
  echo "PostgreSQL is not reachable: the PostgreSQL half of the suite will be skipped (loudly)"
fi

step "Python tools (target/pyenv)"
if [ ! -x target/pyenv/bin/python ]; then
  mkdir -p target
  python3 -m venv target/pyenv
fi
target/pyenv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt

step "Node tools (scripts/node: anvil, solc-js)"
npm ci --prefix scripts/node --no-audit --no-fund --loglevel=error
scripts/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil --version
# The committed test-token bytecode must be what its Solidity source compiles to.
node scripts/build-test-token.js --check

step "Chromium and a CJK font (the refund page's browser test, its Chinese screenshots)"
if ! command -v chromium >/dev/null || [ ! -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei >/dev/null
fi
chromium --version 2>/dev/null

step "cargo fmt --check"
cargo fmt --all --check

step "cargo test (unit + integration on SQLite and PostgreSQL)"
cargo test --workspace --locked

step "PostgreSQL restarted under load (alone: the test restarts the server every other test uses)"
cargo test -q -p ebb --test api --locked -- faults::postgres_restarted_mid_run --ignored --exact --nocapture

step "Soak, short: the mixed load at half its measured capacity on PostgreSQL for 1 minute (bench/src/soak/)"
# It checks what the 30-minute run checks except flatness (judged on six samples or more):
# no errors, every refund final and paid once, every event delivered, the ledger balanced.
cargo build -p ebb --bin ebb -p ebb-bench --bin ebb-bench-soak --locked
target/debug/ebb-bench-soak --ebb target/debug/ebb --samples 4 --sample-seconds 15 --capacity-seconds 10 \
  --out target/bench/soak-ci.md

step "Cobo SDK compatibility and schemathesis against ebb dev"
PY=target/pyenv/bin EBB=target/debug/ebb bash scripts/e2e.sh

step "all suites passed"
