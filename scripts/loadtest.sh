#!/usr/bin/env bash
# Runs one goose campaign (loadtest/) against a running Tessera and keeps goose's HTML report
# and a JSON summary in loadtest-results/.
#
#   scripts/loadtest.sh SCENARIO [RUN_TIME=60s] [USERS=64] [-- more goose flags]
#   SCENARIO: introspect-storm | issue | mixed | code-flow | api | api-revoke
#
# code-flow: each iteration is one full sign-in of a fresh browser session (authorize, login,
# consent when asked, code exchange with PKCE, one refresh); each user signs in as its own
# account loadtest-user-N, so USERS should not exceed LOADTEST_USERS. Logins per second are the
# rate of its "token: code" requests. All its users come from one address, far over the default
# per-address limit of authorize and login: start Tessera with TESSERA_ADDRESS_RATE_PER_SEC=0.
#
# api: the pool's tokens as bearer tokens against the demo API at LOADTEST_API
# (http://127.0.0.1:5000): 60% /api/protected, 30% /api/user/profile, 10% /api/data; a live
# token must get 200, a revoked or unknown one 401. Run the whole demo (scripts/demo.sh) first.
#
# api-revoke: the api traffic while the campaign revokes live tokens at Tessera (1% of
# transactions, at most LOADTEST_REVOCATIONS=5000) and presents them again (a tenth of the calls);
# a call made more than a second after a revocation was acknowledged must get 401, and the
# summary counts those served. scripts/feed-campaign.sh runs it with and without the feed.
#
# Tessera must be running, for example with the README's first command. Environment:
#   LOADTEST_HOST (http://127.0.0.1:4000), LOADTEST_DATA_DIR (./data: its admin.json lets the
#   campaign register resource-server clients and create accounts), LOADTEST_POOL (100000),
#   LOADTEST_REVOKED_PERCENT (5), LOADTEST_UNKNOWN_PERCENT (5), LOADTEST_RESOURCE_SERVERS (8),
#   LOADTEST_USERS (64: code-flow accounts, recreated at every run), LOADTEST_CLIENT
#   (demo-client:demo-secret). Each run is bounded by RUN_TIME; the pool or the accounts are
#   prepared first.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:?usage: scripts/loadtest.sh introspect-storm|issue|mixed|code-flow|api|api-revoke [RUN_TIME] [USERS]}
run_time=${2:-60s}
users=${3:-64}
shift $(( $# < 3 ? $# : 3 ))
[[ ${1:-} == -- ]] && shift
case $scenario in
  introspect-storm|issue|mixed|code-flow|api|api-revoke) ;;
  *) echo "unknown scenario $scenario: introspect-storm, issue, mixed, code-flow, api or api-revoke" >&2; exit 2 ;;
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
