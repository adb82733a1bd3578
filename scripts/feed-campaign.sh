#!/usr/bin/env bash
# The revocation feed under goose: the `api` and `api-revoke` campaigns (loadtest/) through a
# demo API with the feed and through one without (`--no-feed`), each on a fresh Tessera, and
# what each API asked Tessera meanwhile.
#
#   scripts/feed-campaign.sh [RUN_TIME=60s] [USERS=64]
#
# Prints, per campaign and API, goose's summary line, the API's introspection calls to Tessera
# (api_upstream_introspections_total) and, for api-revoke, the count of calls served with a
# token revoked over a second earlier (target with the feed: zero). Tessera listens on
# 127.0.0.1:4940, the API on 127.0.0.1:4941; traffic goes to 127.0.0.1 only, each campaign is
# bounded by RUN_TIME.
set -euo pipefail
cd "$(dirname "$0")/.."
run_time=${1:-60s}
users=${2:-64}
cargo build --release -p tessera --bin tessera
cargo build --release -p tessera-api --bin api-server
cargo build --release -p tessera-loadtest
mkdir -p bench-results
out=bench-results/feed-campaign.txt
: > "$out"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop EXIT
for campaign in api api-revoke; do
  for mode in feed ttl; do
    work=$(mktemp -d)
    sed "s|^data_dir = .*|data_dir = \"$work/data\"|; s|^bind = .*|bind = \"127.0.0.1:4940\"|; s|^issuer = .*|issuer = \"http://127.0.0.1:4940\"|" tessera.toml > "$work/tessera.toml"
    TESSERA_LOG=warn TESSERA_AUDIT_LOG=off ./target/release/tessera serve --config "$work/tessera.toml" 2>"$work/tessera.log" &
    pids+=($!)
    for _ in $(seq 300); do curl -sf http://127.0.0.1:4940/ready >/dev/null && break; sleep 0.1; done
    flag=(); [[ $mode == ttl ]] && flag=(--no-feed)
    RUST_LOG=warn ./target/release/api-server --bind 127.0.0.1:4941 --tessera-url http://127.0.0.1:4940 "${flag[@]}" 2>"$work/api.log" &
    pids+=($!)
    for _ in $(seq 300); do curl -sf http://127.0.0.1:4941/health >/dev/null && break; sleep 0.1; done
    [[ $mode == feed ]] && for _ in $(seq 100); do curl -s http://127.0.0.1:4941/health | grep -q '"feed":"connected"' && break; sleep 0.1; done
    LOADTEST_HOST=http://127.0.0.1:4940 LOADTEST_API=http://127.0.0.1:4941 LOADTEST_DATA_DIR="$work/data" \
      ./target/release/tessera-loadtest --host http://127.0.0.1:4940 --scenarios "${campaign//-/}" \
      --users "$users" --increase-rate "$users" --run-time "$run_time" --report-file "$work/report.json" \
      --no-print-metrics 2>&1 | grep -E '^api-revoke:' | sed "s/^/$campaign $mode /" | tee -a "$out" || true
    python3 - "$work/report.json" "$campaign" "$mode" <<'PY' | tee -a "$out"
import json, sys
report, campaign, mode = sys.argv[1:]
r = json.load(open(report))
reqs = r.get("raw_request_metrics") or r.get("requests") or []
total = sum(m.get("raw_data", {}).get("counter", 0) for m in reqs) if reqs else 0
failed = sum(m.get("fail_count", 0) for m in reqs) if reqs else 0
print(f"{campaign} {mode} goose requests={total} failed={failed}")
PY
    upstream=$(curl -s http://127.0.0.1:4941/metrics | awk '/^api_upstream_introspections_total/ {s += $2} END {print s + 0}')
    echo "$campaign $mode upstream_introspections=$upstream" | tee -a "$out"
    stop
    rm -rf "$work"
  done
done
echo "summary: $out"
