package cli_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/audit"
	"github.com/crewgate/crewgate/internal/cli"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// sessionsEnv points crewgate at a private config and session directory.
func sessionsEnv(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(home, "state"))
	t.Setenv("CREWGATE_CONFIG", "")
	dir := filepath.Join(home, "sessions")
	t.Setenv("CREWGATE_AUDIT_DIR", dir)
	return dir
}

var base = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// recordSession writes a small session the way the proxy records one.
func recordSession(t *testing.T, dir, id string) string {
	t.Helper()
	r, err := audit.Open(dir, id, audit.Event{Time: base, Start: &audit.Start{
		Identity: audit.Identity{Subject: "alice", Email: "alice@example.com"},
		Command:  []string{"python3", "crew.py"}, Version: "1.2.3",
	}}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	body := audit.NewBodyTap(0)
	body.Write([]byte(`{"owner":"[MASKED:email]"}`))
	for _, e := range []audit.Event{
		{Type: audit.TypeRequest, Time: ms(100), ID: "r1", Request: &audit.Request{Method: "GET", URL: "https://api.openai.com/v1/models",
			Upstream: "openai", Route: "intercept", Decision: audit.DecisionAllow,
			Headers: audit.RedactHeaders(http.Header{"Authorization": {"Bearer sk-live-secret"}})}},
		{Type: audit.TypeResponse, Time: ms(300), ID: "r1", Response: &audit.Response{Status: 200, Bytes: 26, Scanned: true,
			Masked: map[string]int{"email": 1}, DurationMS: 200, Body: body.Body(), Headers: http.Header{"Content-Type": {"application/json"}}}},
		// As the proxy writes it: the approval, then the request's decision.
		{Type: audit.TypeApproval, Time: ms(2400), ID: "r2", Approval: &audit.Approval{Decision: audit.DecisionDeny, By: "alice", How: "terminal", WaitedMS: 2000}},
		{Type: audit.TypeRequest, Time: ms(2400), ID: "r2", Request: &audit.Request{Method: "DELETE", URL: "https://crm.example.com/v1/x",
			Upstream: "crm", Route: audit.RouteIntercept, Rule: "confirm-deletes", Decision: audit.DecisionDeny, Refusal: "approval-denied",
			Reason: "the request was denied at the approval prompt"}},
		{Type: audit.TypeResponse, Time: ms(2401), ID: "r2", Response: &audit.Response{Status: 403, Bytes: 90, Scanned: true}},
	} {
		r.Record(e)
	}
	if err := r.Close(audit.Event{Time: ms(3000), End: &audit.End{ExitCode: 0}}); err != nil {
		t.Fatal(err)
	}
	return r.Path()
}

func crewgate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = cli.Main(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSessionsListJSON(t *testing.T) {
	dir := sessionsEnv(t)
	code, out, _ := crewgate(t, "sessions", "list", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty list: exit %d, %q", code, out)
	}
	recordSession(t, dir, "0ab1cd")
	recordSession(t, dir, "0ab2ef")
	code, out, errOut := crewgate(t, "sessions", "list", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"id", "started", "ended", "subject", "command", "requests", "denied", "approved", "masked", "exit_code"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("no %q in %v", k, list[0])
		}
	}
	if list[0]["id"] != "0ab1cd" || list[0]["requests"] != 2.0 || list[0]["denied"] != 1.0 || list[0]["masked"] != 1.0 || list[0]["exit_code"] != 0.0 {
		t.Errorf("list[0] = %v", list[0])
	}
	code, out, _ = crewgate(t, "sessions", "list")
	if code != 0 || !strings.Contains(out, "0ab2ef") || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "python3 crew.py") {
		t.Errorf("table: exit %d\n%s", code, out)
	}
}

func TestSessionsShowGolden(t *testing.T) {
	dir := sessionsEnv(t)
	recordSession(t, dir, "0ab1cd")
	code, out, errOut := crewgate(t, "sessions", "show", "0ab")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	p := filepath.Join("testdata", "sessions", "show.golden")
	if *updateGolden {
		os.WriteFile(p, []byte(out), 0o644)
	}
	want, _ := os.ReadFile(p)
	if out != string(want) {
		t.Errorf("show differs from %s (go test -update rewrites it):\n%s", p, out)
	}
	if strings.Contains(out, "sk-live-secret") {
		t.Error("show printed a credential")
	}
}

func TestSessionsVerify(t *testing.T) {
	dir := sessionsEnv(t)
	path := recordSession(t, dir, "0ab1cd")
	code, out, _ := crewgate(t, "sessions", "verify", "0ab1")
	if code != 0 || !strings.Contains(out, "session 0ab1cd: ok, 7 lines") {
		t.Fatalf("exit %d: %q", code, out)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1), 0o600)
	code, _, errOut := crewgate(t, "sessions", "verify", "0ab1cd")
	if code != 1 || !strings.Contains(errOut, "line 4: edited") {
		t.Errorf("tampered: exit %d, %q", code, errOut)
	}
	code, _, errOut = crewgate(t, "sessions", "show", "0ab1cd")
	if code != 0 || !strings.Contains(errOut, "changed after it was written") {
		t.Errorf("show of a tampered log: exit %d, %q", code, errOut)
	}
}

func TestSessionsIDPrefixes(t *testing.T) {
	dir := sessionsEnv(t)
	recordSession(t, dir, "0ab1cd")
	recordSession(t, dir, "0ab2ef")
	code, _, errOut := crewgate(t, "sessions", "verify", "0ab")
	if code != 2 || !strings.Contains(errOut, "0ab1cd, 0ab2ef") {
		t.Errorf("ambiguous: exit %d, %q", code, errOut)
	}
	code, _, errOut = crewgate(t, "sessions", "show", "zz")
	if code != 1 || !strings.Contains(errOut, `no session "zz"`) {
		t.Errorf("unknown: exit %d, %q", code, errOut)
	}
	code, _, _ = crewgate(t, "sessions", "show", "../0ab1cd")
	if code != 2 {
		t.Errorf("a path as id: exit %d", code)
	}
	if code, _, _ := crewgate(t, "sessions", "verify", "0ab2"); code != 0 {
		t.Errorf("unique prefix: exit %d", code)
	}
}

func TestSessionsExportHAR(t *testing.T) {
	dir := sessionsEnv(t)
	recordSession(t, dir, "0ab1cd")
	file := filepath.Join(t.TempDir(), "s.har")
	code, _, errOut := crewgate(t, "sessions", "export", "0ab1cd", "--har", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("HAR file mode %v", fi.Mode().Perm())
	}
	var har struct {
		Log struct {
			Version string
			Entries []struct {
				Request  struct{ Method string }
				Response struct{ Status int }
				Crewgate struct{ Decision, Rule string } `json:"_crewgate"`
			}
		}
	}
	data, _ := os.ReadFile(file)
	if err := json.Unmarshal(data, &har); err != nil || har.Log.Version != "1.2" || len(har.Log.Entries) != 2 {
		t.Fatalf("%v: %s", err, data)
	}
	if e := har.Log.Entries[1]; e.Request.Method != "DELETE" || e.Response.Status != 403 || e.Crewgate.Rule != "confirm-deletes" {
		t.Errorf("entry 1 = %+v", e)
	}
	if bytes.Contains(data, []byte("sk-live-secret")) {
		t.Error("the HAR holds a credential")
	}
	if code, _, _ := crewgate(t, "sessions", "export", "0ab1cd"); code != 2 {
		t.Errorf("without --har: exit %d", code)
	}
}

func TestSessionsReplayWithoutTerminalPrintsEverything(t *testing.T) {
	dir := sessionsEnv(t)
	recordSession(t, dir, "0ab1cd")
	start := time.Now()
	code, out, errOut := crewgate(t, "sessions", "replay", "0ab1cd")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if time.Since(start) > 2*time.Second {
		t.Error("replay without a terminal waited")
	}
	for _, want := range []string{"[1/6]", "Authorization: [REDACTED]", `| {"owner":"[MASKED:email]"}`, "approval: DENY by alice", "[6/6]"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if code, _, _ := crewgate(t, "sessions", "replay", "0ab1cd", "--speed", "0"); code != 2 {
		t.Errorf("--speed 0: exit %d", code)
	}
}
