#!/usr/bin/env bash
# Runs one goose campaign (loadtest/) against a running Tessera and keeps goose's HTML report
# and a JSON summary in loadtest-results/.
#
#   scripts/loadtest.sh SCENARIO [RUN_TIME=60s] [USERS=64] [-- more goose flags]
#   SCENARIO: introspect-storm | issue | mixed
#
# Tessera must be running, for example with the README's first command. Environment:
#   LOADTEST_HOST (http://127.0.0.1:4000), LOADTEST_DATA_DIR (./data: its admin.json lets the
#   campaign register resource-server clients), LOADTEST_POOL (100000), LOADTEST_REVOKED_PERCENT
#   (5), LOADTEST_UNKNOWN_PERCENT (5), LOADTEST_RESOURCE_SERVERS (8), LOADTEST_CLIENT
#   (demo-client:demo-secret). Each run is bounded by RUN_TIME; the pool is prepared first.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:?usage: scripts/loadtest.sh introspect-storm|issue|mixed [RUN_TIME] [USERS]}
run_time=${2:-60s}
users=${3:-64}
shift $(( $# < 3 ? $# : 3 ))
[[ ${1:-} == -- ]] && shift
case $scenario in
  introspect-storm|issue|mixed) ;;
  *) echo "unknown scenario $scenario: introspect-storm, issue or mixed" >&2; exit 2 ;;
esac
host=${LOADTEST_HOST:-http://127.0.0.1:4000}
case $host in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) echo "load campaigns only target 127.0.0.1 (LOADTEST_HOST=$host)" >&2; exit 2 ;;
esac

cargo build --release -p tessera-loadtest
mkdir -p loadtest-results
out=loadtest-results/$scenario-$(date -u +%Y%m%dT%H%M%SZ)
./target/release/tessera-loadtest \
  --host "$host" \
  --scenarios "${scenario//-/}" \
  --users "$users" --increase-rate "$users" \
  --run-time "$run_time" \
  --report-file "$out.html" --report-file "$out.json" \
  --no-print-metrics "$@"
echo "reports: $out.html $out.json"
