#!/usr/bin/env bash
# The whole demo on this machine, with the embedded defaults:
#   Tessera     http://127.0.0.1:4000  (tessera.toml: clients demo-client and api-server,
#                                       user alice / wonderland-42, data in ./data)
#   demo API    http://127.0.0.1:5000  (api-server: introspects through its cache and breaker)
#   demo client http://127.0.0.1:3001  (sign in, see the tokens, call the API, refresh, revoke)
# Ctrl-C stops all three. Log level: RUST_LOG / TESSERA_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p tessera -p tessera-api --bins

pids=()
stop() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

# Waits (at most 30 s) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "scripts/demo.sh: nothing listens on port $1 after 30 s" >&2
    exit 1
}

target/release/tessera serve --config tessera.toml &
pids+=($!)
wait_port 4000
target/release/api-server --bind 127.0.0.1:5000 --tessera-url http://127.0.0.1:4000 &
pids+=($!)
target/release/demo-client --bind 127.0.0.1:3001 --tessera-url http://127.0.0.1:4000 --api-url http://127.0.0.1:5000 &
pids+=($!)
wait_port 5000
wait_port 3001

cat <<'MSG'

  Tessera      http://127.0.0.1:4000/.well-known/openid-configuration
  demo API     http://127.0.0.1:5000/health
  demo client  http://127.0.0.1:3001/   (sign in as alice / wonderland-42)

  Ctrl-C stops all three.
MSG
# Whichever stops first stops the demo.
wait -n
