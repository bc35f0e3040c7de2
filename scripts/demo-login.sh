#!/usr/bin/env bash
# Builds crewgate and walks through its login on local stand-ins: no account,
# no internet. A real OpenID Provider (the same embedded one the tests use)
# runs on 127.0.0.1, and a private gnome-keyring holds the refresh token, so
# your own keyring and config are never touched.
#
#   scripts/demo-login.sh
#
# The demo plays your part in the browser with curl (sign in as alice, allow
# the device). To do it yourself instead, run crewgate-devidp and
# 'crewgate login' by hand, as README.md shows.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_packages

echo "== building bin/crewgate and bin/crewgate-devidp"
go build -o bin/crewgate ./cmd/crewgate
go build -o bin/crewgate-devidp ./internal/testidp/cmd/crewgate-devidp

demo() {
	set -euo pipefail
	work="$(mktemp -d)"
	trap 'kill $idp_pid 2>/dev/null; rm -rf "$work"' EXIT
	export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_STATE_HOME="$work/home/.local/state"
	mkdir -p "$XDG_CONFIG_HOME/crewgate"

	bin/crewgate-devidp -addr 127.0.0.1:0 -interval 1s >"$work/issuer" 2>"$work/idp.log" &
	idp_pid=$!
	for _ in $(seq 50); do [ -s "$work/issuer" ] && break; sleep 0.1; done
	issuer="$(cat "$work/issuer")"
	[ -n "$issuer" ] || { echo "the local IdP did not start:"; cat "$work/idp.log"; exit 1; }
	cat >"$XDG_CONFIG_HOME/crewgate/config.yaml" <<CONFIG
issuer: $issuer
client_id: crewgate
scopes: [openid, profile, email, offline_access]
upstreams:
  - name: openai
    hosts: [api.openai.com]
    credential: {source: secret, secret: openai}
    env: [OPENAI_API_KEY]
CONFIG
	echo "== a local OpenID Provider runs at $issuer (users alice/pw, bob/pw)"
	echo
	echo "\$ crewgate login --no-browser"
	mkfifo "$work/login.err"
	bin/crewgate login --no-browser 2>"$work/login.err" &
	login_pid=$!
	while IFS= read -r line; do
		printf '%s\n' "$line"
		if [[ $line == "Your one-time code: "* ]]; then
			code="${line#Your one-time code: }"
		fi
		if [[ $line == "Waiting for you"* ]]; then
			echo "   (demo: signing in as alice in the 'browser' and allowing code $code)"
			curl -fsS -c "$work/jar" -b "$work/jar" -o /dev/null \
				--data-urlencode "user_code=$code" --data-urlencode username=alice --data-urlencode password=pw \
				"${issuer}device/login"
			curl -fsS -c "$work/jar" -b "$work/jar" -o /dev/null "${issuer}device/confirm?action=allowed"
		fi
	done <"$work/login.err"
	wait "$login_pid"
	echo
	echo "\$ crewgate status"
	bin/crewgate status
	echo
	echo "\$ printf %s sk-demo-not-a-real-key | crewgate secret set openai"
	printf %s sk-demo-not-a-real-key | bin/crewgate secret set openai
	echo "\$ crewgate secret list"
	bin/crewgate secret list
	echo
	echo "\$ crewgate logout"
	bin/crewgate logout
	echo "\$ crewgate status   # exits 3 now"
	bin/crewgate status || echo "(exit $?)"
}
export -f demo
with_test_keyring bash -c demo
