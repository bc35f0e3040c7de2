#!/usr/bin/env bash
# Regenerates the committed shell completions (completions/) and man pages
# (docs/man/) from the cobra command tree. TestGeneratedFilesAreFresh fails
# when they are stale, so run this after changing commands or flags.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/crewgate" ./cmd/crewgate
mkdir -p completions
"$tmp/crewgate" completion bash >completions/crewgate.bash
"$tmp/crewgate" completion zsh >completions/_crewgate
"$tmp/crewgate" completion fish >completions/crewgate.fish
"$tmp/crewgate" completion powershell >completions/crewgate.ps1
rm -rf docs/man
"$tmp/crewgate" man docs/man 2>/dev/null
echo "wrote completions/ and docs/man/"
