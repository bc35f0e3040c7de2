package runner

import (
	"cmp"
	"runtime"
	"slices"
	"strings"
)

// SessionVar is the variable that carries the session id into the child. A
// crewgate that finds it in its own environment runs inside another session.
const SessionVar = "CREWGATE_SESSION"

// keyringVars give a process a way into the user's keyrings and agents: the
// D-Bus session bus (Secret Service, KWallet), the SSH agent, GNOME Keyring's
// control socket, the GnuPG agent and the Kerberos credential cache.
var keyringVars = []string{
	"DBUS_SESSION_BUS_ADDRESS",
	"SSH_AUTH_SOCK",
	"GNOME_KEYRING_CONTROL",
	"GPG_AGENT_INFO",
	"KRB5CCNAME",
}

// KeyringVars returns the keyring-access variables BuildEnv removes unless
// EnvParams.KeepEnv names them: DBUS_SESSION_BUS_ADDRESS, SSH_AUTH_SOCK,
// GNOME_KEYRING_CONTROL, GPG_AGENT_INFO and KRB5CCNAME.
//
// Removing them is hygiene, not a boundary: a process of the same user can
// still find the session bus at its well-known path ($XDG_RUNTIME_DIR/bus,
// which libdbus and GDBus try when DBUS_SESSION_BUS_ADDRESS is unset) and
// read the keyring from there.
func KeyringVars() []string { return slices.Clone(keyringVars) }

// caVars point the usual client libraries at the trust bundle: OpenSSL and Go
// (SSL_CERT_FILE), Python requests, curl, and Node (which appends the file to
// its built-in roots).
var caVars = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"}

// proxyVars are set in both letter cases: curl reads only the lower-case
// http_proxy, other clients prefer the upper case.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY"}

// loopback is always exempt from the proxy: the child talking to itself or to
// a local service must not be routed through crewgate.
var loopback = []string{"localhost", "127.0.0.1", "::1"}

// EnvParams is what crewgate puts into the child's environment.
type EnvParams struct {
	ProxyURL     string            // http://crewgate:<credential>@127.0.0.1:<port>
	CABundle     string            // path of the trust bundle file
	Session      string            // session id -> CREWGATE_SESSION
	Placeholders map[string]string // env var name -> placeholder value (each upstream's `env`)
	KeepEnv      []string          // keyring-access variables the config keeps (default none)

	// Secrets are real credential values known when the child starts. Any
	// inherited variable whose value contains one of them is removed, whatever
	// its name, so that a copy of a key under another name does not reach the
	// child. Empty strings are ignored.
	Secrets []string
}

// BuildEnv returns the child's environment from base (crewgate's own, as from
// os.Environ()):
//
//   - HTTP_PROXY, HTTPS_PROXY, http_proxy and https_proxy are ProxyURL;
//     ALL_PROXY and all_proxy are removed.
//   - NO_PROXY and no_proxy are the entries of the user's NO_PROXY and
//     no_proxy, deduplicated, plus localhost, 127.0.0.1 and ::1. A "*" entry is
//     dropped: it would send the child around the proxy altogether.
//   - SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and NODE_EXTRA_CA_CERTS
//     are CABundle; AIOHTTP_TRUST_ENV=true; NODE_USE_ENV_PROXY=1.
//   - CREWGATE_SESSION is Session; every other CREWGATE_* variable (crewgate's
//     own configuration) is removed.
//   - Each Placeholders variable is set to its placeholder; its real value is
//     removed.
//   - The keyring-access variables of KeyringVars are removed unless KeepEnv
//     names them.
//   - Variables whose value contains one of Secrets are removed.
//
// Every name BuildEnv sets or removes is matched regardless of letter case, so
// that no variant such as Https_Proxy or openai_api_key slips through. Otherwise
// names are compared as the OS does (case-insensitively on Windows) and only
// the first of several entries with the same name survives, which is the one
// getenv would have returned. The result has one entry per name and is sorted
// by name.
func BuildEnv(base []string, p EnvParams) []string {
	return buildEnv(base, p, runtime.GOOS == "windows")
}

// buildEnv is BuildEnv with the OS's name comparison made explicit (fold:
// case-insensitive names, as on Windows) so that both can be tested anywhere.
func buildEnv(base []string, p EnvParams, fold bool) []string {
	key := func(name string) string {
		if fold {
			return strings.ToUpper(name)
		}
		return name
	}

	keep := make(map[string]bool, len(p.KeepEnv))
	for _, name := range p.KeepEnv {
		keep[strings.ToUpper(name)] = true
	}
	managed := map[string]bool{"ALL_PROXY": true, "NO_PROXY": true, "AIOHTTP_TRUST_ENV": true, "NODE_USE_ENV_PROXY": true}
	for _, names := range [][]string{proxyVars, caVars} {
		for _, name := range names {
			managed[name] = true
		}
	}
	for name := range p.Placeholders {
		managed[strings.ToUpper(name)] = true
	}
	for _, name := range keyringVars {
		if !keep[name] {
			managed[name] = true
		}
	}
	drop := func(name, value string) bool {
		upper := strings.ToUpper(name)
		if managed[upper] || strings.HasPrefix(upper, "CREWGATE_") {
			return true
		}
		for _, s := range p.Secrets {
			if s != "" && strings.Contains(value, s) {
				return true
			}
		}
		return false
	}

	var noProxy []string
	seen := make(map[string]bool) // exact names for the NO_PROXY merge
	env := make(map[string]string, len(base))
	for _, kv := range base {
		name, value, ok := splitEnv(kv)
		if !ok {
			continue
		}
		if strings.EqualFold(name, "NO_PROXY") && !seen[name] {
			seen[name] = true
			noProxy = append(noProxy, value)
		}
		if drop(name, value) {
			continue
		}
		if _, dup := env[key(name)]; !dup {
			env[key(name)] = kv
		}
	}

	set := func(name, value string) { env[key(name)] = name + "=" + value }
	// Placeholders first: should a config name one of crewgate's own
	// variables, the proxy and trust settings below still win.
	for name, value := range p.Placeholders {
		set(name, value)
	}
	for _, name := range proxyVars {
		set(strings.ToLower(name), p.ProxyURL)
		set(name, p.ProxyURL)
	}
	np := mergeNoProxy(noProxy)
	set("no_proxy", np)
	set("NO_PROXY", np)
	for _, name := range caVars {
		set(name, p.CABundle)
	}
	set("AIOHTTP_TRUST_ENV", "true")
	set("NODE_USE_ENV_PROXY", "1")
	set(SessionVar, p.Session)

	out := make([]string, 0, len(env))
	for _, kv := range env {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b string) int {
		na, _, _ := splitEnv(a)
		nb, _, _ := splitEnv(b)
		return cmp.Or(strings.Compare(key(na), key(nb)), strings.Compare(a, b))
	})
	return out
}

// mergeNoProxy joins the comma-separated lists in values and the loopback
// names, keeping the first of entries that differ only in letter case.
func mergeNoProxy(values []string) string {
	var out []string
	seen := make(map[string]bool)
	add := func(entry string) {
		entry = strings.TrimSpace(entry)
		if entry == "" || entry == "*" || seen[strings.ToLower(entry)] {
			return
		}
		seen[strings.ToLower(entry)] = true
		out = append(out, entry)
	}
	for _, v := range values {
		for entry := range strings.SplitSeq(v, ",") {
			add(entry)
		}
	}
	for _, entry := range loopback {
		add(entry)
	}
	return strings.Join(out, ",")
}

// splitEnv splits a NAME=value entry. A leading '=' belongs to the name, as in
// the "=C:=C:\dir" entries Windows keeps for per-drive directories.
func splitEnv(kv string) (name, value string, ok bool) {
	i := strings.IndexByte(kv[min(1, len(kv)):], '=')
	if i < 0 {
		return "", "", false
	}
	i += min(1, len(kv))
	return kv[:i], kv[i+1:], true
}

// Session returns the crewgate session id found in env, or "" when env does
// not come from a crewgate session. crewgate uses it to notice that it is
// about to run inside one of its own sessions.
func Session(env []string) string {
	v, _ := lookupEnv(env, SessionVar, runtime.GOOS == "windows")
	return v
}

// lookupEnv returns the first value of name in env, as getenv would.
func lookupEnv(env []string, name string, fold bool) (string, bool) {
	for _, kv := range env {
		n, v, ok := splitEnv(kv)
		if ok && (n == name || fold && strings.EqualFold(n, name)) {
			return v, true
		}
	}
	return "", false
}
