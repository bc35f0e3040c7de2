package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
	"github.com/crewgate/crewgate/internal/testenv"
	"github.com/crewgate/crewgate/internal/testidp"
)

// crewgateBin is the real binary, built once for all end-to-end tests;
// goClientBin is a plain Go HTTP client the tests run as a crew.
var crewgateBin, goClientBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crewgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	crewgateBin = filepath.Join(dir, "crewgate")
	goClientBin = filepath.Join(dir, "goclient")
	for bin, pkg := range map[string]string{crewgateBin: "../../cmd/crewgate", goClientBin: "./testdata/goclient"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sandbox is a private HOME with its own XDG dirs and a profile of its own in
// the shared test keyring.
type sandbox struct {
	t       *testing.T
	home    string
	profile string
	env     []string
	outputs bytes.Buffer // everything every command printed
}

func newSandbox(t *testing.T, extraEnv ...string) *sandbox {
	t.Helper()
	home := t.TempDir()
	profile := fmt.Sprintf("t%d", time.Now().UnixNano())
	s := &sandbox{t: t, home: home, profile: profile}
	s.env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"CREWGATE_PROFILE=" + profile,
		// Temporary files (the trust bundle) land under HOME too, so the
		// leak checks search them.
		"TMPDIR=" + filepath.Join(home, "tmp"),
	}
	if err := os.Mkdir(filepath.Join(home, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			s.env = append(s.env, k+"="+v)
		}
	}
	s.env = append(s.env, extraEnv...)
	t.Cleanup(func() {
		// Leave nothing of this test in the shared keyring.
		if st, err := keyring.New(keyring.Options{Timeout: 5 * time.Second}); err == nil {
			for _, a := range []string{profile + "/refresh_token", profile + "/secret_index", profile + "/secret/openai"} {
				st.Delete(a)
			}
		}
	})
	return s
}

func (s *sandbox) writeConfig(body string) string {
	s.t.Helper()
	dir := filepath.Join(s.home, ".config", "crewgate")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs crewgate to completion with stdin.
func (s *sandbox) run(stdin string, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(crewgateBin, args...)
	cmd.Env = s.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("running crewgate %v: %v", args, err)
	}
	s.outputs.WriteString(out.String() + errOut.String())
	return result{out.String(), errOut.String(), code}
}

// login runs 'crewgate login --no-browser' and completes the user's side at
// the IdP with decide once the code is shown.
func (s *sandbox) login(decide func(code string) error, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(crewgateBin, append([]string{"login", "--no-browser"}, args...)...)
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout = &out
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	var errOut bytes.Buffer
	var decideErr error
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		line := sc.Text()
		errOut.WriteString(line + "\n")
		if code, ok := strings.CutPrefix(line, "Your one-time code: "); ok && decide != nil {
			decideErr = decide(code)
		}
	}
	err = cmd.Wait()
	if decideErr != nil {
		s.t.Fatalf("completing the device flow: %v\nstderr:\n%s", decideErr, errOut.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	s.outputs.WriteString(out.String() + errOut.String())
	return result{out.String(), errOut.String(), code}
}

func (s *sandbox) status() (map[string]any, result) {
	s.t.Helper()
	r := s.run("", "status", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		s.t.Fatalf("status --json printed no JSON object: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return m, r
}

// assertNowhere fails when secret appears in any file under HOME (which
// holds the sandbox's TMPDIR) or in any output printed so far.
func (s *sandbox) assertNowhere(what, secret string) {
	s.t.Helper()
	if secret == "" {
		s.t.Fatalf("%s is empty: the test would prove nothing", what)
	}
	if strings.Contains(s.outputs.String(), secret) {
		s.t.Errorf("%s appears in crewgate's output", what)
	}
	filepath.WalkDir(s.home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			s.t.Errorf("%s appears in %s", what, p)
		}
		return nil
	})
}

func keyringValue(t *testing.T, account string) (string, error) {
	t.Helper()
	st, err := keyring.New(keyring.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return st.Get(account)
}

func approveAs(idp *testidp.IdP, user string) func(string) error {
	return func(code string) error { return idp.Approve(code, user, testidp.Password) }
}

func TestLoginStatusLogout(t *testing.T) {
	testenv.RequireKeyring(t)
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	s := newSandbox(t)
	s.writeConfig("issuer: " + idp.Issuer + "\nclient_id: crewgate\n")

	start := time.Now()
	r := s.login(approveAs(idp, "alice"))
	t.Logf("login end to end took %s", time.Since(start).Round(time.Millisecond))
	if r.code != 0 {
		t.Fatalf("login exit %d\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("login wrote to stdout: %q", r.stdout)
	}
	for _, want := range []string{"Open this URL to sign in: " + idp.Issuer + "device", "Waiting for you to confirm", "Logged in as alice <alice@example.com>"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("login stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	refresh, err := keyringValue(t, s.profile+"/refresh_token")
	if err != nil {
		t.Fatalf("the refresh token is not in the keyring: %v", err)
	}

	st, r := s.status()
	if r.code != 0 {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	if st["logged_in"] != true || st["subject"] != "alice" || st["email"] != "alice@example.com" ||
		st["name"] != "Alice Example" || st["issuer"] != idp.Issuer || st["token_storage"] != "keyring" {
		t.Errorf("status = %v", st)
	}
	if g, _ := json.Marshal(st["groups"]); string(g) != `["ml-engineers","crew-admins"]` {
		t.Errorf("groups = %s", g)
	}
	if !strings.HasSuffix(st["config_file"].(string), filepath.Join("crewgate", "config.yaml")) {
		t.Errorf("config_file = %v", st["config_file"])
	}
	if r := s.run("", "status"); r.code != 0 || !strings.Contains(r.stdout, "Logged in as alice") || !strings.Contains(r.stdout, "ml-engineers, crew-admins") {
		t.Errorf("status: exit %d\n%s", r.code, r.stdout)
	}

	// The identity cache holds no secret and is private.
	cache := filepath.Join(s.home, ".local", "state", "crewgate", s.profile, "identity.json")
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity cache: %v, mode %v", err, fi.Mode())
	}

	r = s.run("", "logout")
	if r.code != 0 || !strings.Contains(r.stderr, "Revoked the refresh token at the provider") {
		t.Fatalf("logout exit %d\n%s", r.code, r.stderr)
	}
	if _, err := keyringValue(t, s.profile+"/refresh_token"); err == nil {
		t.Error("the refresh token is still in the keyring after logout")
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("identity cache still there after logout: %v", err)
	}
	// Revoked at the provider: the token no longer buys anything.
	p, err := identity.Discover(context.Background(), identity.Config{Issuer: idp.Issuer, ClientID: testidp.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refresh(context.Background(), refresh, nil, nil); err == nil {
		t.Error("the refresh token still works at the provider after logout")
	}
	if _, r := s.status(); r.code != 3 {
		t.Errorf("status after logout: exit %d, want 3", r.code)
	}
	s.assertNowhere("the refresh token", refresh)
}

func TestLoginDenied(t *testing.T) {
	testenv.RequireKeyring(t)
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	s := newSandbox(t)
	r := s.login(func(code string) error { return idp.Deny(code, "alice", testidp.Password) }, "--issuer", idp.Issuer)
	if r.code != 1 {
		t.Fatalf("denied login exit %d, want 1\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "crewgate: login: ") || !strings.Contains(r.stderr, "denied") || !strings.Contains(r.stderr, "hint: ") {
		t.Errorf("denied login stderr:\n%s", r.stderr)
	}
	if _, err := keyringValue(t, s.profile+"/refresh_token"); err == nil {
		t.Error("a denied login stored a refresh token")
	}
	if st, r := s.status(); r.code != 3 || st["logged_in"] != false {
		t.Errorf("status after denied login: exit %d %v", r.code, st)
	}
}

func TestLoginInsecureStorage(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	// No keyring at all: the plaintext file is the only place.
	s := newSandbox(t, "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/bus")
	r := s.login(approveAs(idp, "bob"), "--issuer", idp.Issuer, "--insecure-storage")
	if r.code != 0 {
		t.Fatalf("login exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "warning: --insecure-storage") {
		t.Errorf("no warning about plaintext storage:\n%s", r.stderr)
	}
	st, r := s.status()
	if r.code != 0 || st["token_storage"] != "file" || st["subject"] != "bob" {
		t.Errorf("status: exit %d %v", r.code, st)
	}
	if r := s.run("", "status"); !strings.Contains(r.stdout, "plaintext file") {
		t.Errorf("status does not say the token is in a plaintext file:\n%s", r.stdout)
	}
	file := filepath.Join(s.home, ".local", "state", "crewgate", s.profile, "insecure-credentials.json")
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", err, fi)
	}
	if r := s.run("", "logout"); r.code != 0 {
		t.Fatalf("logout exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), "refresh_token") {
		t.Errorf("token file still holds the refresh token after logout: %s", b)
	}
	if _, r := s.status(); r.code != 3 {
		t.Errorf("status after logout: exit %d", r.code)
	}
}

func TestLoginWithoutKeyringFailsFast(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	s := newSandbox(t, "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/bus")
	start := time.Now()
	r := s.login(approveAs(idp, "alice"), "--issuer", idp.Issuer)
	if r.code != 1 {
		t.Fatalf("login without keyring: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failing took %s", d)
	}
	if strings.Contains(r.stderr, "one-time code") {
		t.Error("the device flow started although the token could not be stored")
	}
	if !strings.Contains(r.stderr, "crewgate: login: the OS keyring is not usable") || !strings.Contains(r.stderr, "--insecure-storage") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if strings.Count(r.stderr, "crewgate:") != 1 {
		t.Errorf("the error was printed more than once:\n%s", r.stderr)
	}
}

func TestLoginCtrlCCancels(t *testing.T) {
	testenv.RequireKeyring(t)
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT")
	}
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	s := newSandbox(t)
	cmd := exec.Command(crewgateBin, "login", "--no-browser", "--issuer", idp.Issuer)
	cmd.Env = s.env
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	var once sync.Once
	var sent time.Time
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		errOut.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Waiting for you") {
			once.Do(func() { sent = time.Now(); cmd.Process.Signal(syscall.SIGINT) })
		}
	}
	err := cmd.Wait()
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("login took %s to stop after Ctrl-C", d)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit = %v, want 130", err)
	}
	if !strings.Contains(errOut.String(), "crewgate: login: cancelled") {
		t.Errorf("stderr:\n%s", errOut.String())
	}
}

func TestLoginProviderWithoutDeviceEndpoint(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token",
			"jwks_uri": srv.URL + "/keys", "response_types_supported": []string{"code"},
		})
	}))
	srv.Start()
	defer srv.Close()
	s := newSandbox(t)
	r := s.run("", "login", "--no-browser", "--insecure-storage", "--issuer", srv.URL)
	if r.code != 1 || !strings.Contains(r.stderr, "device_authorization_endpoint") || !strings.Contains(r.stderr, "hint: enable the device authorization grant") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestLoginUnreachableIssuer(t *testing.T) {
	s := newSandbox(t)
	r := s.run("", "login", "--no-browser", "--insecure-storage", "--issuer", "http://127.0.0.1:1/")
	if r.code != 1 || !strings.Contains(r.stderr, "127.0.0.1:1") || !strings.Contains(r.stderr, "hint: check the issuer URL") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestLoginNeedsIssuer(t *testing.T) {
	s := newSandbox(t)
	r := s.run("", "login", "--no-browser")
	if r.code != 4 || !strings.Contains(r.stderr, "no OIDC issuer is configured") || !strings.Contains(r.stderr, "--issuer") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestConfigErrorsExit4WithFileLine(t *testing.T) {
	s := newSandbox(t)
	p := s.writeConfig("issuer: https://idp.example\napproval:\n  timeout: 2 minutes\n")
	r := s.run("", "status")
	want := "crewgate: " + p + ":3: approval.timeout: \"2 minutes\" is not a duration"
	if r.code != 4 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant %q", r.code, r.stderr, want)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	s := newSandbox(t)
	for _, args := range [][]string{{"nope"}, {"status", "--bogus"}, {"secret", "set"}, {"login", "extra"}} {
		if r := s.run("", args...); r.code != 2 || !strings.HasPrefix(r.stderr, "crewgate: ") {
			t.Errorf("crewgate %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
}

func TestSecretSetListRm(t *testing.T) {
	testenv.RequireKeyring(t)
	s := newSandbox(t)
	s.writeConfig(`upstreams:
  - name: openai
    hosts: [api.openai.com]
    credential: {source: secret, secret: openai}
  - name: anthropic
    hosts: [api.anthropic.com]
    credential: {source: secret, secret: anthropic}
`)
	const value = "sk-test-DO-NOT-PRINT-4f9a2c"
	if r := s.run(value+"\n", "secret", "set", "openai"); r.code != 0 {
		t.Fatalf("secret set: exit %d\n%s", r.code, r.stderr)
	}
	got, err := keyringValue(t, s.profile+"/secret/openai")
	if err != nil || got != value {
		t.Fatalf("keyring holds %d bytes (err %v); want the value without its trailing newline", len(got), err)
	}
	r := s.run("", "secret", "list")
	if r.code != 0 {
		t.Fatalf("secret list: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"openai     stored   openai", "anthropic  missing  anthropic"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("secret list lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := s.run("", "secret", "set", "openai"); r.code != 1 || !strings.Contains(r.stderr, "the value is empty") {
		t.Errorf("empty secret: exit %d\n%s", r.code, r.stderr)
	}
	if r := s.run("x", "secret", "set", "Bad/Name"); r.code != 2 {
		t.Errorf("bad name: exit %d\n%s", r.code, r.stderr)
	}
	if r := s.run("", "secret", "rm", "openai"); r.code != 0 {
		t.Fatalf("secret rm: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := keyringValue(t, s.profile+"/secret/openai"); err == nil {
		t.Error("the secret is still in the keyring after rm")
	}
	if r := s.run("", "secret", "rm", "openai"); r.code != 1 || !strings.Contains(r.stderr, `no secret named "openai"`) {
		t.Errorf("rm twice: exit %d\n%s", r.code, r.stderr)
	}
	s.assertNowhere("the secret value", value)
}

func TestVersion(t *testing.T) {
	s := newSandbox(t)
	r := s.run("", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "crewgate ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version: exit %d %q", r.code, r.stdout)
	}
}

// TestLoginOpensBrowserQuietly puts a fake xdg-open on PATH that chatters on
// stdout and stderr and approves the login, like a user in a browser. Its
// output must not reach crewgate's stdout or stderr.
func TestLoginOpensBrowserQuietly(t *testing.T) {
	testenv.RequireKeyring(t)
	if runtime.GOOS != "linux" {
		t.Skip("xdg-open is the Linux launcher")
	}
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	bin := t.TempDir()
	opened := filepath.Join(bin, "opened")
	script := `#!/bin/sh
echo "$1" > ` + opened + `
echo LAUNCHER-STDOUT-NOISE
echo LAUNCHER-STDERR-NOISE >&2
`
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, "DISPLAY=:99")
	for i, kv := range s.env {
		if strings.HasPrefix(kv, "PATH=") {
			s.env[i] = "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")
		}
	}
	cmd := exec.Command(crewgateBin, "login", "--issuer", idp.Issuer)
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout = &out
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		errOut.WriteString(sc.Text() + "\n")
		if code, ok := strings.CutPrefix(sc.Text(), "Your one-time code: "); ok {
			go idp.Approve(code, "alice", testidp.Password)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("login: %v\n%s", err, errOut.String())
	}
	url, err := os.ReadFile(opened)
	if err != nil || !strings.HasPrefix(string(url), idp.Issuer+"device") {
		t.Errorf("the browser was not opened on the verification URL: %q %v", url, err)
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, "NOISE") {
		t.Errorf("the launcher's output reached crewgate's output:\nstdout: %q\nstderr:\n%s", out.String(), errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("login wrote to stdout: %q", out.String())
	}
	if !strings.Contains(errOut.String(), "Opened your browser") {
		t.Errorf("stderr:\n%s", errOut.String())
	}
}
