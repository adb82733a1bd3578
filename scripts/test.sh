#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need when it is missing, then runs
# `cargo test --release --workspace` with any arguments given here.
#
# The browser tests (tests/browser.rs) drive Debian's Chromium with playwright-core from npm, so
# this needs /usr/bin/chromium (or $CHROMIUM), node and npm, installed with apt-get as root or
# through sudo, and tests/browser/node_modules, installed with `npm ci` from package-lock.json.
# playwright-core downloads no browser of its own.
#
# The PostgreSQL tests (the storage contract, tests/crash.rs, tests/cluster.rs, and the second
# run of the integration suites, on PostgreSQL) start a throwaway server of their
# own with initdb and pg_ctl (Debian's postgresql package; as the postgres user when run as
# root), so this installs postgresql when neither is found.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || packages+=(chromium)
# Only what is missing: a Node.js from elsewhere (NodeSource's bundles npm) conflicts with Debian's npm.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    packages+=(postgresql)
fi
if [ ${#packages[@]} -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "scripts/test.sh: need root or sudo to install ${packages[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "== installing ${packages[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi

if [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
    echo "== npm ci (tests/browser)"
    npm ci --prefix tests/browser --no-audit --no-fund
    touch tests/browser/node_modules
fi

cargo test --release --workspace "$@"
# The integration suites again, every server on a throwaway PostgreSQL of its own
# (tests/common: TESSERA_TEST_STORE), so that both backends pass the same tests.
echo "== integration suites on PostgreSQL"
TESSERA_TEST_STORE=postgres cargo test --release --test suite "$@"
