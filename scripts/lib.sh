# Helpers shared by crewgate's scripts. Source it; do not run it.

# ensure_packages installs, from Debian's apt, what the tests and the demo need
# when it is missing: a real Secret Service (gnome-keyring on D-Bus), the
# clients the proxy tests drive (curl, python3 requests and httpx) and tmux.
ensure_packages() {
	local need=()
	command -v dbus-run-session >/dev/null || need+=(dbus)
	command -v gnome-keyring-daemon >/dev/null || need+=(gnome-keyring)
	command -v secret-tool >/dev/null || need+=(libsecret-tools)
	command -v tmux >/dev/null || need+=(tmux)
	command -v curl >/dev/null || need+=(curl)
	/usr/bin/python3 -c 'import requests' 2>/dev/null || need+=(python3-requests)
	/usr/bin/python3 -c 'import httpx' 2>/dev/null || need+=(python3-httpx)
	[ ${#need[@]} -eq 0 ] && return 0
	echo "== installing ${need[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ensure_sdks installs the npm AI SDKs (and a Node new enough to honour the
# proxy variables) that tests run as the crew, from internal/cli/testdata/sdk's
# lock file, when they are missing or the lock file changed.
ensure_sdks() {
	local dir=internal/cli/testdata/sdk
	if [ -x "$dir/node_modules/.bin/node" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"; then
		return 0
	fi
	command -v npm >/dev/null || {
		echo "== installing npm"
		local sudo=""
		[ "$(id -u)" -eq 0 ] || sudo="sudo"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
	}
	echo "== npm ci in $dir (the SDKs the crew tests use)"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && cp package-lock.json node_modules/.package-lock.json.installed)
}

# with_test_keyring runs its arguments inside a new D-Bus session whose
# gnome-keyring is unlocked with a fixed password and keeps its keyrings in a
# temporary directory that is removed afterwards.
with_test_keyring() {
	local dir status=0
	dir="$(mktemp -d)"
	mkdir -p "$dir/keyrings" && chmod 700 "$dir" "$dir/keyrings"
	XDG_DATA_HOME="$dir" dbus-run-session -- bash -c '
		printf %s crewgate-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null
		exec "$@"' bash "$@" || status=$?
	rm -rf "$dir"
	return $status
}
