#!/usr/bin/env bash
# Builds crewgate and runs its main job end to end on local stand-ins: no
# account, no internet. A sample agent runs through 'crewgate run' against a
# stand-in OpenAI API on 127.0.0.1; you see the placeholder it holds, the real
# key injected on the wire, masked answers (streamed and not) and refused
# requests. The demo's fake key lives in a private gnome-keyring that is
# thrown away afterwards, so your own keyring is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_packages
command -v python3 >/dev/null || { echo "the sample agent needs python3"; exit 1; }

echo "== building bin/crewgate"
go build -o bin/crewgate ./cmd/crewgate
with_test_keyring bin/crewgate demo
