#!/usr/bin/env bash
# Runs crewgate's whole test suite the way CI does: installs what the tests
# need when it is missing, then runs go vet and go test -race inside a private
# D-Bus session with a gnome-keyring unlocked by a fixed password, so the
# keyring tests use the real Secret Service and never touch your own keyring.
#
# Usage: scripts/test.sh [go test flags...]   e.g. scripts/test.sh -run Login
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_packages
ensure_sdks

echo "== go vet ./..."
go vet ./...

echo "== go test -race ./... (inside a private D-Bus session with gnome-keyring)"
with_test_keyring go test -race -count=1 -timeout 30m "$@" ./...
