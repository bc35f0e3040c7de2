package cli_test

import (
	"bufio"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/testenv"
	"github.com/crewgate/crewgate/internal/testidp"
)

const demoSecret = "cg-test-REALsecretValueNeverInTheChild0123456789"

// standIn is an OpenAI-like HTTPS service on 127.0.0.1 that records the
// credentials it was sent.
type standIn struct {
	*httptest.Server
	caFile string
	mu     sync.Mutex
	auths  []string
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	s := &standIn{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+demoSecret {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key"}`)
			return
		}
		switch r.URL.Path {
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "text/event-stream")
			for _, piece := range []string{"Your key is AKIA", "IOSF", "ODNN7EX", "AMPLE and mail bob@", "example.org."} {
				fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", piece)
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"echo":%q,"aws":"AKIAIOSFODNN7EXAMPLE"}`, r.Header.Get("Authorization"))
		}
	}))
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "standin.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *standIn) sawOnly(t *testing.T, want string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auths) == 0 {
		t.Fatal("the stand-in API got no request")
	}
	for _, a := range s.auths {
		if a != want {
			t.Errorf("the stand-in API saw Authorization %q", a)
		}
	}
}

// runSandbox is a sandbox with a config naming the stand-in as api.example.com
// and the demo secret in the keyring.
func runSandbox(t *testing.T, api *standIn, extra string) *sandbox {
	t.Helper()
	testenv.RequireKeyring(t)
	s := newSandbox(t)
	s.writeConfig(fmt.Sprintf(`default_action: deny
upstreams:
  - name: openai
    hosts: [api.example.com]
    address: %s
    ca_file: %s
    credential: {source: secret, secret: openai}
    env: [OPENAI_API_KEY]
%s`, strings.TrimPrefix(api.URL, "https://"), api.caFile, extra))
	if r := s.run(demoSecret, "secret", "set", "openai"); r.code != 0 {
		t.Fatalf("secret set: %s", r.stderr)
	}
	return s
}

func TestRunCurlGetsInjectionAndMasking(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	api := newStandIn(t)
	s := runSandbox(t, api, "")
	// The user's real key, also under another name, must not reach the child.
	s.env = append(s.env, "OPENAI_API_KEY="+demoSecret, "MY_COPY_OF_THE_KEY="+demoSecret)
	script := `env > "$ENV_DUMP"
curl -sS https://api.example.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"; echo
curl -sS -N https://api.example.com/v1/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY"
curl -sS -o /dev/null -w 'denied:%{http_connect}\n' https://example.org/ || true
exit 7`
	envDump := filepath.Join(s.home, "child-env")
	s.env = append(s.env, "ENV_DUMP="+envDump)
	r := s.run("", "run", "--", "sh", "-c", script)
	if r.code != 7 {
		t.Fatalf("run exit %d, want the child's 7\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	api.sawOnly(t, "Bearer "+demoSecret)
	for _, want := range []string{"denied:403", `"echo":"Bearer [MASKED:credential]"`, `"aws":"[MASKED:aws_access_key]"`, "[MASKED:email]", "[MASKED:aws_access_key]"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("child output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "AKIA") {
		t.Errorf("an AWS key reached the child:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "crewgate: session ") || !strings.Contains(r.stderr, " denied, ") {
		t.Errorf("no summary line:\n%s", r.stderr)
	}
	env, err := os.ReadFile(envDump)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"HTTPS_PROXY=http://crewgate:", "https_proxy=", "SSL_CERT_FILE=", "REQUESTS_CA_BUNDLE=", "CURL_CA_BUNDLE=", "NODE_EXTRA_CA_CERTS=", "CREWGATE_SESSION=", "OPENAI_API_KEY=crewgate-openai-placeholder-"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("child env lacks %s", want)
		}
	}
	if strings.Contains(string(env), "DBUS_SESSION_BUS_ADDRESS") {
		t.Error("the child can reach the keyring: DBUS_SESSION_BUS_ADDRESS was kept")
	}
	s.outputs.WriteString(string(env))

	// The session was recorded, verifies, and its log holds no credential
	// (assertNowhere searches every file under HOME, the log included).
	logs, _ := filepath.Glob(filepath.Join(s.home, ".local", "state", "crewgate", "sessions", "*.jsonl"))
	if len(logs) != 1 {
		t.Fatalf("session logs: %v", logs)
	}
	id := strings.TrimSuffix(filepath.Base(logs[0]), ".jsonl")
	if !strings.Contains(r.stderr, "log: "+logs[0]) {
		t.Errorf("the summary does not name the log:\n%s", r.stderr)
	}
	if v := s.run("", "sessions", "verify", id[:8]); v.code != 0 {
		t.Errorf("sessions verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	list := s.run("", "sessions", "list", "--json")
	if !strings.Contains(list.stdout, `"denied": 1`) && !strings.Contains(list.stdout, `"denied":1`) {
		t.Errorf("sessions list --json:\n%s", list.stdout)
	}
	log, _ := os.ReadFile(logs[0])
	for _, want := range []string{`"refusal":"egress-denied"`, `"credential":1`, `"Authorization":["[REDACTED]"]`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	s.assertNowhere("the real secret", demoSecret)
}

func requirePython(t *testing.T, module string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 %s is not installed; scripts/test.sh installs it", module)
		}
		t.Skipf("python3 %s is not installed; run scripts/test.sh", module)
	}
}

// TestRunRealClients runs the crews people write: python requests, httpx
// (streaming) and Go's net/http, each only configured by the environment.
func TestRunRealClients(t *testing.T) {
	api := newStandIn(t)
	clients := []struct {
		name, module string
		args         []string
	}{
		{"requests", "requests", []string{"/usr/bin/python3", "-c", `
import os, requests
key = os.environ["OPENAI_API_KEY"]
r = requests.get("https://api.example.com/v1/models", headers={"Authorization": "Bearer " + key})
print(r.status_code, r.text)
r = requests.get("https://example.org/")
`}},
		{"httpx", "httpx", []string{"/usr/bin/python3", "-c", `
import os, httpx
key = os.environ["OPENAI_API_KEY"]
with httpx.Client() as c:
    print(c.get("https://api.example.com/v1/models", headers={"Authorization": "Bearer " + key}).text)
    with c.stream("POST", "https://api.example.com/v1/chat/completions", headers={"Authorization": "Bearer " + key}) as r:
        for line in r.iter_lines():
            print(line)
`}},
		{"go", "", []string{goClientBin, "https://api.example.com/v1/models"}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.module != "" {
				requirePython(t, c.module)
			}
			s := runSandbox(t, api, "")
			r := s.run("", append([]string{"run", "--"}, c.args...)...)
			if !strings.Contains(r.stdout, `"echo":"Bearer [MASKED:credential]"`) || strings.Contains(r.stdout, "AKIA") {
				t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if c.name == "httpx" && (!strings.Contains(r.stdout, "[MASKED:aws_access_key]") || !strings.Contains(r.stdout, "[MASKED:email]")) {
				t.Errorf("the stream was not masked:\n%s", r.stdout)
			}
			if c.name == "requests" && (r.code == 0 || !strings.Contains(r.stderr, "403")) {
				t.Errorf("the denied request did not fail with 403: exit %d\n%s", r.code, r.stderr)
			}
			api.sawOnly(t, "Bearer "+demoSecret)
			s.assertNowhere("the real secret", demoSecret)
		})
	}
}

func TestRunRefusesWithoutCredentials(t *testing.T) {
	api := newStandIn(t)
	testenv.RequireKeyring(t)
	marker := filepath.Join(t.TempDir(), "child-ran")

	s := newSandbox(t)
	s.writeConfig(fmt.Sprintf("upstreams:\n  - {name: openai, hosts: [api.example.com], address: %s, credential: {source: secret, secret: openai}}\n", strings.TrimPrefix(api.URL, "https://")))
	r := s.run("", "run", "--", "touch", marker)
	if r.code != 1 || !strings.Contains(r.stderr, "crewgate secret set openai") {
		t.Errorf("missing secret: exit %d\n%s", r.code, r.stderr)
	}

	s = newSandbox(t)
	s.writeConfig("issuer: http://127.0.0.1:1/\nupstreams:\n  - {name: crew, hosts: [crew.example.com], credential: {source: oidc, scopes: [crew:read]}}\n")
	r = s.run("", "run", "--", "touch", marker)
	if r.code != 3 || !strings.Contains(r.stderr, "run 'crewgate login'") {
		t.Errorf("no login: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the child ran although crewgate refused")
	}
}

// TestRunSignalsAndCleanup sends crewgate SIGINT and SIGTERM while the child
// runs: the child gets the signal once, crewgate exits with its code, and
// the trust bundle is gone.
func TestRunSignalsAndCleanup(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		want int
	}{
		{"normal exit", 0, 0},
		{"SIGINT", syscall.SIGINT, 130},
		{"SIGTERM", syscall.SIGTERM, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			dir := t.TempDir()
			ready, got := filepath.Join(dir, "ready"), filepath.Join(dir, "got")
			// The child records the bundle path and every signal it receives.
			script := `echo "$SSL_CERT_FILE" > ` + ready + `
trap 'echo INT >> ` + got + `; exit 130' INT
trap 'echo TERM >> ` + got + `; exit 143' TERM
i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); [ -n "$STOP_EARLY" ] && exit 0; done`
			env := s.env
			if tc.sig == 0 {
				env = append(env, "STOP_EARLY=1")
			}
			cmd := exec.Command(crewgateBin, "run", "--", "sh", "-c", script)
			cmd.Env = env
			var errOut strings.Builder
			cmd.Stderr = &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var bundle string
			for i := 0; i < 200 && bundle == ""; i++ {
				b, _ := os.ReadFile(ready)
				bundle = strings.TrimSpace(string(b))
				time.Sleep(10 * time.Millisecond)
			}
			if bundle == "" {
				t.Fatalf("the child never started\n%s", errOut.String())
			}
			if _, err := os.Stat(bundle); err != nil {
				t.Fatalf("the bundle is missing while the child runs: %v", err)
			}
			if tc.sig != 0 {
				cmd.Process.Signal(tc.sig)
			}
			err := cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.want {
				t.Errorf("exit %d, want %d\n%s", code, tc.want, errOut.String())
			}
			if tc.sig != 0 {
				b, _ := os.ReadFile(got)
				if want := map[syscall.Signal]string{syscall.SIGINT: "INT\n", syscall.SIGTERM: "TERM\n"}[tc.sig]; string(b) != want {
					t.Errorf("the child got %q, want %q once", b, want)
				}
			}
			if _, err := os.Stat(filepath.Dir(bundle)); !os.IsNotExist(err) {
				t.Errorf("the bundle directory %s survived: %v", filepath.Dir(bundle), err)
			}
		})
	}
}

// TestRunWithOIDCUpstream logs in at the embedded IdP, then runs a crew
// against an upstream that takes an access token from that login.
func TestRunWithOIDCUpstream(t *testing.T) {
	testenv.RequireKeyring(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	var mu sync.Mutex
	var seen []string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprintf(w, "you sent %s\n", r.Header.Get("Authorization"))
	}))
	defer api.Close()
	caFile := filepath.Join(t.TempDir(), "api.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)

	s := newSandbox(t)
	s.writeConfig(fmt.Sprintf(`issuer: %s
scopes: [openid, profile, email, offline_access]
upstreams:
  - name: crew
    hosts: [crew.example.com]
    address: %s
    ca_file: %s
    credential: {source: oidc, scopes: [crew:read]}
    env: [CREW_TOKEN]
`, idp.Issuer, strings.TrimPrefix(api.URL, "https://"), caFile))
	if r := s.login(approveAs(idp, "alice")); r.code != 0 {
		t.Fatalf("login: %s", r.stderr)
	}
	before, err := keyringValue(t, s.profile+"/refresh_token")
	if err != nil {
		t.Fatal(err)
	}
	r := s.run("", "run", "--", "sh", "-c", `curl -sS https://crew.example.com/ -H "Authorization: Bearer $CREW_TOKEN"; env`)
	if r.code != 0 {
		t.Fatalf("run exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "Bearer ") || strings.Contains(seen[0], "placeholder") || len(seen[0]) < 20 {
		t.Fatalf("the upstream saw %q", seen)
	}
	if !strings.Contains(r.stdout, "you sent Bearer [MASKED:credential]") {
		t.Errorf("the token echoed back was not masked:\n%s", r.stdout)
	}
	after, err := keyringValue(t, s.profile+"/refresh_token")
	if err != nil || after == "" {
		t.Fatalf("the refresh token is gone from the keyring: %v", err)
	}
	if after == before {
		t.Log("the provider did not rotate the refresh token")
	}
	// The rotated token (written back) still works for the next run.
	if r := s.run("", "run", "--", "true"); r.code != 0 {
		t.Errorf("second run: exit %d\n%s", r.code, r.stderr)
	}
	s.assertNowhere("the access token", strings.TrimPrefix(seen[0], "Bearer "))
	s.assertNowhere("the refresh token", after)
}

// TestDemo runs 'crewgate demo', README's first command, and checks that it
// shows what it promises.
func TestDemo(t *testing.T) {
	testenv.RequireKeyring(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 missing")
	}
	s := newSandbox(t)
	r := s.run("", "demo")
	if r.code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"my OPENAI_API_KEY is 'crewgate-openai-placeholder-",
		"GET /v1/models -> 200",
		"the model answered: Deploy notes: the CI user has AWS key [MASKED:aws_access_key], page [MASKED:email]",
		"streaming the same answer: Deploy notes: the CI user has AWS key [MASKED:aws_access_key]",
		"the key you sent me is [MASKED:credential].",
		`the destructive prompt was refused: 403 {"type":"error","error":{"type":"crewgate_refusal","code":"policy-denied","message":"crewgate refused the request (policy-denied) by rule no-destructive-sql: agents never drop tables"`,
		"https://example.com/ was refused: Tunnel connection failed: 403",
		"http://169.254.169.254/latest/meta-data/ was refused: 403",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "received the real key on 3 requests and anything else on 0") || !strings.Contains(r.stderr, "chain holds") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "sk-demo-") {
		t.Error("the demo key was printed")
	}
	if _, err := keyringValue(t, "crewgate-demo/secret/openai"); err == nil {
		t.Error("the demo left its key in the keyring")
	}
	if logs, _ := filepath.Glob(filepath.Join(s.home, ".local", "state", "crewgate", "sessions", "*")); len(logs) != 0 {
		t.Errorf("the demo left session logs in the user's state dir: %v", logs)
	}
}

// TestRunHeadlessApprovalDenies: with no terminal and nobody attached
// through 'crewgate approve', a request that needs approval is denied at
// once and never reaches the upstream.
func TestRunHeadlessApprovalDenies(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	api := newStandIn(t)
	s := runSandbox(t, api, `rules:
  - name: confirm-deletes
    action: approve
    reason: deletes data
    match: {methods: [DELETE]}
`)
	start := time.Now()
	r := s.run("", "run", "--", "sh", "-c", `curl -sS -X DELETE https://api.example.com/v1/files/1 -H "Authorization: Bearer $OPENAI_API_KEY"; echo; curl -sS https://api.example.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"`)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the headless denial took %s", d)
	}
	if r.code != 0 || !strings.Contains(r.stdout, `"code":"approval-unavailable","message":"crewgate refused the request (approval-unavailable) by rule confirm-deletes: rule confirm-deletes needs approval and there is no terminal to ask`) {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.auths) != 1 {
		t.Errorf("the stand-in got %d requests, want only the allowed GET", len(api.auths))
	}
}

// TestRunApproveFromAnotherTerminal answers a crew's approval prompts with
// 'crewgate approve' in a second process: allow for the session, after
// which the same request passes without asking.
func TestRunApproveFromAnotherTerminal(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	api := newStandIn(t)
	s := runSandbox(t, api, `rules:
  - name: confirm-deletes
    action: approve
    reason: deletes data
    match: {methods: [DELETE]}
`)
	runDir := filepath.Join(s.home, "run")
	os.Mkdir(runDir, 0o700)
	s.env = append(s.env, "XDG_RUNTIME_DIR="+runDir)
	goFile := filepath.Join(s.home, "go")
	del := `curl -sS -o /dev/null -w '%{http_code}\n' -X DELETE https://api.example.com/v1/files/1 -H "Authorization: Bearer $OPENAI_API_KEY"`
	crew := exec.Command(crewgateBin, "run", "--no-tui", "--", "sh", "-c",
		`while [ ! -f `+goFile+` ]; do sleep 0.05; done; `+del+`; `+del)
	crew.Env = s.env
	var crewOut, crewErr strings.Builder
	crew.Stdout, crew.Stderr = &crewOut, &crewErr
	if err := crew.Start(); err != nil {
		t.Fatal(err)
	}
	defer crew.Process.Kill()
	for i := 0; ; i++ {
		if socks, _ := filepath.Glob(filepath.Join(runDir, "crewgate", "*.sock")); len(socks) == 1 {
			break
		}
		if i > 200 {
			t.Fatalf("no control socket\n%s", crewErr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}

	approve := exec.Command(crewgateBin, "approve")
	approve.Env = s.env
	in, _ := approve.StdinPipe()
	out, _ := approve.StdoutPipe()
	errPipe, _ := approve.StderrPipe()
	if err := approve.Start(); err != nil {
		t.Fatal(err)
	}
	defer approve.Process.Kill()
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Watching session") {
				os.WriteFile(goFile, nil, 0o600) // the approver is attached: let the crew go
			}
		}
	}()
	requests := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "request" {
			requests++
			if f[2] != "DELETE" {
				t.Errorf("prompt: %s", sc.Text())
			}
			io.WriteString(in, "s "+f[1]+"\n")
		}
	}
	if err := approve.Wait(); err != nil {
		t.Errorf("approve: %v", err)
	}
	if err := crew.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, crewErr.String())
	}
	if got := crewOut.String(); got != "200\n200\n" {
		t.Errorf("the crew got %q, want two 200s\n%s", got, crewErr.String())
	}
	if requests != 1 {
		t.Errorf("approve was asked %d times, want once (the session grant covers the second)", requests)
	}
	logs, _ := filepath.Glob(filepath.Join(s.home, ".local", "state", "crewgate", "sessions", "*.jsonl"))
	if len(logs) != 1 {
		t.Fatalf("logs: %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(b), `"by":"approve:`) || !strings.Contains(string(b), `"how":"grant"`) {
		t.Errorf("the log does not show who approved and the grant:\n%s", b)
	}
}

// TestRunHeadlessFail: with approval.headless: fail, a request that needs
// approval without a terminal stops the whole run.
func TestRunHeadlessFail(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl missing; run scripts/test.sh")
	}
	api := newStandIn(t)
	s := runSandbox(t, api, `approval: {headless: fail}
rules:
  - {name: confirm-deletes, action: approve, match: {methods: [DELETE]}}
`)
	marker := filepath.Join(s.home, "went-on")
	r := s.run("", "run", "--", "sh", "-c", `curl -sS -X DELETE https://api.example.com/v1/files/1; sleep 5; touch `+marker)
	if r.code != 1 || !strings.Contains(r.stderr, "crewgate: run: rule confirm-deletes needs approval and there is no terminal to ask") ||
		!strings.Contains(r.stderr, "hint: run the crew on a terminal") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the crew went on after the run failed")
	}
}

// TestRunFailingAfterTheLogOpensClosesIt: a run that fails before its child
// starts (here: a bad SSL_CERT_FILE) still ends its session log cleanly.
func TestRunFailingAfterTheLogOpensClosesIt(t *testing.T) {
	s := newSandbox(t)
	bad := filepath.Join(s.home, "not-pem.crt")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	s.env = append(s.env, "SSL_CERT_FILE="+bad)
	r := s.run("", "run", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "crewgate: run: writing the CA bundle") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	logs, _ := filepath.Glob(filepath.Join(s.home, ".local", "state", "crewgate", "sessions", "*.jsonl"))
	if len(logs) != 1 {
		t.Fatalf("logs: %v", logs)
	}
	id := strings.TrimSuffix(filepath.Base(logs[0]), ".jsonl")
	v := s.run("", "sessions", "verify", id)
	if v.code != 0 || strings.Contains(v.stdout+v.stderr, "abrupt") {
		t.Errorf("verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	if b, _ := os.ReadFile(logs[0]); !strings.Contains(string(b), `"type":"session_end"`) {
		t.Errorf("the log has no end:\n%s", b)
	}
}
