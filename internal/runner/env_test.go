package runner

import (
	"slices"
	"strings"
	"testing"
)

const (
	testProxy   = "http://crewgate:c2VjcmV0@127.0.0.1:41234"
	testBundle  = "/tmp/crewgate-test/bundle.pem"
	testSession = "01JTESTSESSION"
)

// envMap turns env into a map, failing on malformed or duplicate names (as
// compared by the OS, fold meaning case-insensitive).
func envMap(t *testing.T, env []string, fold bool) map[string]string {
	t.Helper()
	m := make(map[string]string, len(env))
	keys := make(map[string]bool, len(env))
	for _, kv := range env {
		name, value, ok := splitEnv(kv)
		if !ok {
			t.Fatalf("malformed entry %q", kv)
		}
		k := name
		if fold {
			k = strings.ToUpper(name)
		}
		if keys[k] {
			t.Errorf("duplicate name %q in %q", name, env)
		}
		keys[k] = true
		m[name] = value
	}
	return m
}

// fixedVars are what every child gets from the params above.
func fixedVars(noProxy string) map[string]string {
	return map[string]string{
		"HTTP_PROXY":          testProxy,
		"HTTPS_PROXY":         testProxy,
		"http_proxy":          testProxy,
		"https_proxy":         testProxy,
		"NO_PROXY":            noProxy,
		"no_proxy":            noProxy,
		"SSL_CERT_FILE":       testBundle,
		"REQUESTS_CA_BUNDLE":  testBundle,
		"CURL_CA_BUNDLE":      testBundle,
		"NODE_EXTRA_CA_CERTS": testBundle,
		"AIOHTTP_TRUST_ENV":   "true",
		"NODE_USE_ENV_PROXY":  "1",
		"CREWGATE_SESSION":    testSession,
	}
}

func TestBuildEnv(t *testing.T) {
	const loop = "localhost,127.0.0.1,::1"
	tests := []struct {
		name   string
		base   []string
		params EnvParams
		want   map[string]string // besides fixedVars; "" value means absent
		// noProxy overrides the expected NO_PROXY/no_proxy value.
		noProxy string
		// never lists strings that must not appear anywhere in the result.
		never []string
	}{
		{
			name: "empty base",
		},
		{
			name: "unrelated variables pass through",
			base: []string{"A0=x", "A=y", "LANG=C.UTF-8", "TERM=xterm-256color"},
			want: map[string]string{"A0": "x", "A": "y", "LANG": "C.UTF-8", "TERM": "xterm-256color"},
		},
		{
			name: "user proxy settings are replaced in both letter cases",
			base: []string{
				"HTTP_PROXY=http://corp:3128", "HTTPS_PROXY=http://corp:3128",
				"http_proxy=http://corp:3128", "https_proxy=http://corp:3128",
				"Https_Proxy=http://odd:1", "ALL_PROXY=socks5://corp:1080", "all_proxy=socks5://corp:1080",
			},
			want:  map[string]string{"ALL_PROXY": "", "all_proxy": "", "Https_Proxy": ""},
			never: []string{"corp:3128", "corp:1080", "odd:1"},
		},
		{
			name:    "NO_PROXY merges both cases, deduplicates and adds loopback",
			base:    []string{"NO_PROXY=corp.example, localhost ,,*", "no_proxy=CORP.example,10.0.0.0/8,::1"},
			noProxy: "corp.example,localhost,10.0.0.0/8,::1,127.0.0.1",
		},
		{
			name:    "NO_PROXY duplicates: the first entry counts",
			base:    []string{"no_proxy=first.example", "no_proxy=second.example"},
			noProxy: "first.example," + loop,
			never:   []string{"second.example"},
		},
		{
			name:  "user trust settings are replaced",
			base:  []string{"SSL_CERT_FILE=/etc/corp.pem", "REQUESTS_CA_BUNDLE=/etc/corp.pem", "CURL_CA_BUNDLE=/etc/corp.pem", "NODE_EXTRA_CA_CERTS=/etc/corp.pem", "ssl_cert_file=/etc/corp.pem"},
			want:  map[string]string{"ssl_cert_file": ""},
			never: []string{"/etc/corp.pem"},
		},
		{
			name: "client switches are forced",
			base: []string{"AIOHTTP_TRUST_ENV=false", "NODE_USE_ENV_PROXY=0", "aiohttp_trust_env=0"},
			want: map[string]string{"aiohttp_trust_env": ""},
		},
		{
			name: "placeholders replace real values in every letter case",
			base: []string{"OPENAI_API_KEY=sk-real-1", "openai_api_key=sk-real-2", "OPENAI_API_KEY=sk-real-3", "Crm_Token=crm-real"},
			params: EnvParams{Placeholders: map[string]string{
				"OPENAI_API_KEY": "crewgate-placeholder-openai",
				"CRM_TOKEN":      "crewgate-placeholder-crm",
				"NEW_KEY":        "crewgate-placeholder-new",
			}},
			want: map[string]string{
				"OPENAI_API_KEY": "crewgate-placeholder-openai", "openai_api_key": "",
				"CRM_TOKEN": "crewgate-placeholder-crm", "Crm_Token": "",
				"NEW_KEY": "crewgate-placeholder-new",
			},
			never: []string{"sk-real", "crm-real"},
		},
		{
			name: "secret values are removed under any name",
			base: []string{"OTHER_KEY=sk-real-1", "NOTES=prefix sk-real-1 suffix", "EMPTY=", "HOME=/home/u"},
			params: EnvParams{
				Placeholders: map[string]string{"OPENAI_API_KEY": "crewgate-placeholder"},
				Secrets:      []string{"sk-real-1", ""},
			},
			want:  map[string]string{"OTHER_KEY": "", "NOTES": "", "EMPTY": "", "HOME": "/home/u", "OPENAI_API_KEY": "crewgate-placeholder"},
			never: []string{"sk-real"},
		},
		{
			name: "keyring access is removed by default",
			base: []string{
				"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus", "SSH_AUTH_SOCK=/tmp/ssh-agent.sock",
				"GNOME_KEYRING_CONTROL=/run/user/1000/keyring", "GPG_AGENT_INFO=/run/gpg:0:1", "KRB5CCNAME=FILE:/tmp/krb5cc_1000",
				"ssh_auth_sock=/tmp/other.sock",
			},
			want: map[string]string{
				"DBUS_SESSION_BUS_ADDRESS": "", "SSH_AUTH_SOCK": "", "GNOME_KEYRING_CONTROL": "",
				"GPG_AGENT_INFO": "", "KRB5CCNAME": "", "ssh_auth_sock": "",
			},
			never: []string{"/run/user/1000", "agent.sock", "krb5cc", "other.sock"},
		},
		{
			name:   "keyring access kept when the config says so",
			base:   []string{"SSH_AUTH_SOCK=/tmp/ssh-agent.sock", "KRB5CCNAME=FILE:/tmp/krb5cc_1000", "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/bus"},
			params: EnvParams{KeepEnv: []string{"ssh_auth_sock", "KRB5CCNAME", "PATH"}},
			want:   map[string]string{"SSH_AUTH_SOCK": "/tmp/ssh-agent.sock", "KRB5CCNAME": "FILE:/tmp/krb5cc_1000", "DBUS_SESSION_BUS_ADDRESS": ""},
		},
		{
			name:  "crewgate's own configuration is removed, the session set",
			base:  []string{"CREWGATE_PROFILE=work", "CREWGATE_LOG_LEVEL=debug", "CREWGATE_SESSION=outer", "crewgate_config=/x.yaml", "CREWGATEWAY=kept"},
			want:  map[string]string{"CREWGATE_PROFILE": "", "CREWGATE_LOG_LEVEL": "", "crewgate_config": "", "CREWGATEWAY": "kept"},
			never: []string{"outer", "work", "/x.yaml"},
		},
		{
			name:  "one entry per name, the first wins; malformed entries dropped",
			base:  []string{"PATH=/first", "HOME=/home/u", "PATH=/second", "garbage", "Path=/other-name", "TERM=xterm", "EMPTY="},
			want:  map[string]string{"PATH": "/first", "HOME": "/home/u", "Path": "/other-name", "TERM": "xterm", "EMPTY": ""},
			never: []string{"/second", "garbage"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.params
			p.ProxyURL, p.CABundle, p.Session = testProxy, testBundle, testSession
			env := buildEnv(tt.base, p, false)

			names := make([]string, len(env))
			for i, kv := range env {
				names[i], _, _ = splitEnv(kv)
			}
			if !slices.IsSorted(names) {
				t.Errorf("not sorted by name: %q", env)
			}
			got := envMap(t, env, false)
			np := tt.noProxy
			if np == "" {
				np = loop
			}
			want := fixedVars(np)
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if v == "" && k != "EMPTY" {
					if gv, ok := got[k]; ok {
						t.Errorf("%s=%q survived", k, gv)
					}
					continue
				}
				if gv, ok := got[k]; !ok || gv != v {
					t.Errorf("%s = %q (present %v), want %q", k, gv, ok, v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					if strings.HasPrefix(strings.ToUpper(k), "CREWGATE_") && k != SessionVar {
						t.Errorf("crewgate configuration %s reached the child", k)
					}
				}
			}
			joined := strings.Join(env, "\n")
			for _, s := range tt.never {
				if strings.Contains(joined, s) {
					t.Errorf("%q appears in %q", s, env)
				}
			}
			for _, name := range keyringVars {
				if _, ok := got[name]; ok && !slices.Contains(tt.params.KeepEnv, name) && !slices.Contains(tt.params.KeepEnv, strings.ToLower(name)) {
					t.Errorf("keyring variable %s survived", name)
				}
			}
		})
	}
}

// TestBuildEnvFoldedNames checks the Windows rules on any OS: names that
// differ only in letter case are one variable.
func TestBuildEnvFoldedNames(t *testing.T) {
	base := []string{
		"=C:=C:\\work", "Path=C:\\Windows", "PATH=C:\\evil", "http_proxy=http://corp:3128",
		"OpenAI_Api_Key=sk-real", "SystemRoot=C:\\Windows", "ssh_auth_sock=\\\\.\\pipe\\agent",
	}
	env := buildEnv(base, EnvParams{
		ProxyURL: testProxy, CABundle: testBundle, Session: testSession,
		Placeholders: map[string]string{"OPENAI_API_KEY": "crewgate-placeholder"},
	}, true)
	got := envMap(t, env, true)
	want := map[string]string{
		"=C:":            "C:\\work",
		"Path":           "C:\\Windows",
		"HTTP_PROXY":     testProxy,
		"HTTPS_PROXY":    testProxy,
		"NO_PROXY":       "localhost,127.0.0.1,::1",
		"OPENAI_API_KEY": "crewgate-placeholder",
		"SystemRoot":     "C:\\Windows",
		SessionVar:       testSession,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, s := range []string{"evil", "corp", "sk-real", "agent"} {
		if strings.Contains(strings.Join(env, "\n"), s) {
			t.Errorf("%q survived in %q", s, env)
		}
	}
	if env[0] != "=C:=C:\\work" {
		t.Errorf("not sorted by folded name: %q", env)
	}
}

func TestSession(t *testing.T) {
	if got := Session([]string{"HOME=/h", "CREWGATE_SESSION=abc", "CREWGATE_SESSION=def"}); got != "abc" {
		t.Errorf("Session = %q, want abc", got)
	}
	if got := Session([]string{"HOME=/h"}); got != "" {
		t.Errorf("Session = %q, want empty", got)
	}
}
