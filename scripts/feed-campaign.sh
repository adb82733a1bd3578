#!/usr/bin/env bash
# The revocation feed under goose: the `api` and `api-revoke` campaigns (loadtest/) through a
# demo API with the feed and through one without (`--no-feed`), each on a fresh Tessera, and
# what each API asked Tessera meanwhile.
#
#   [CAMPAIGNS="api api-revoke"] [MODES="feed ttl"] scripts/feed-campaign.sh [RUN_TIME=60s] [USERS=64]
#
# Prints, per campaign and API, goose's summary line, the API's introspection calls to Tessera
# (api_upstream_introspections_total) and, for api-revoke, the count of calls served with a
# token revoked over a second earlier (target with the feed: zero). Tessera listens on
# 127.0.0.1:4940, the API on 127.0.0.1:4941; traffic goes to 127.0.0.1 only, each campaign is
# bounded by RUN_TIME. Both APIs hold up to API_CACHE_CAPACITY (200,000) answers: the pool is
# 105,000 tokens (live, revoked and never issued), and a cache smaller than the working set
# measures its own evictions, with the feed or without.
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
for campaign in ${CAMPAIGNS:-api api-revoke}; do
  for mode in ${MODES:-feed ttl}; do
    work=$(mktemp -d)
    sed "s|^data_dir = .*|data_dir = \"$work/data\"|; s|^bind = .*|bind = \"127.0.0.1:4940\"|; s|^issuer = .*|issuer = \"http://127.0.0.1:4940\"|" tessera.toml > "$work/tessera.toml"
    TESSERA_LOG=warn TESSERA_AUDIT_LOG=off ./target/release/tessera serve --config "$work/tessera.toml" 2>"$work/tessera.log" &
    pids+=($!)
    for _ in $(seq 300); do curl -sf http://127.0.0.1:4940/ready >/dev/null && break; sleep 0.1; done
    flag=(); [[ $mode == ttl ]] && flag=(--no-feed)
    RUST_LOG=warn ./target/release/api-server --bind 127.0.0.1:4941 --tessera-url http://127.0.0.1:4940 \
      --cache-capacity "${API_CACHE_CAPACITY:-200000}" "${flag[@]}" 2>"$work/api.log" &
    pids+=($!)
    for _ in $(seq 300); do curl -sf http://127.0.0.1:4941/health >/dev/null && break; sleep 0.1; done
    [[ $mode == feed ]] && for _ in $(seq 100); do curl -s http://127.0.0.1:4941/health | grep -q '"feed":"connected"' && break; sleep 0.1; done
    LOADTEST_HOST=http://127.0.0.1:4940 LOADTEST_API=http://127.0.0.1:4941 LOADTEST_DATA_DIR="$work/data" \
      ./target/release/tessera-loadtest --host http://127.0.0.1:4940 --scenarios "${campaign//-/}" \
      --users "$users" --increase-rate "$users" --run-time "$run_time" \
      --no-print-metrics 2>&1 | grep -E '^api-revoke:' | sed "s/^/$campaign $mode /" | tee -a "$out" || true
    metrics=$(curl -s http://127.0.0.1:4941/metrics)
    sum() { awk -v name="$1" 'index($0, name) == 1 {s += $NF} END {print s + 0}' <<<"$metrics"; }
    echo "$campaign $mode api_requests=$(sum 'api_http_requests_total{') upstream_introspections=$(sum 'api_upstream_introspections_total{')" \
      "cache_hits=$(sum 'api_introspection_cache_total{result="hit"') negative_hits=$(sum 'api_introspection_cache_total{result="negative_hit"') misses=$(sum 'api_introspection_cache_total{result="miss"')" \
      "feed_events=$(sum 'api_feed_lag_seconds_count') feed_reconnects=$(sum 'api_feed_reconnects_total')" | tee -a "$out"
    stop
    rm -rf "$work"
  done
done
echo "summary: $out"
