package proxy

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/policy"
)

func compileRules(t *testing.T, rules string) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("rules:\n"+rules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeApprover answers every request with one verdict and remembers them.
type fakeApprover struct {
	verdict approval.Verdict
	mu      sync.Mutex
	asked   []approval.Request
}

func (f *fakeApprover) Ask(_ context.Context, r approval.Request) approval.Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, r)
	return f.verdict
}

const testRules = `  - name: no-drop-table
    action: deny
    reason: never drop tables
    match: {body: '(?i)\bdrop\s+table\b'}
  - name: confirm-deletes
    action: approve
    reason: deletes data
    match: {methods: [DELETE]}
  - name: deploy-needs-group
    action: deny
    match: {path: "/v1/deploy*", not_groups: [ml-deployers]}
  - name: no-pastebin
    action: deny
    match: {hosts: [pastebin.example.org]}
`

func TestPolicyDecidesInterceptedRequests(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	ap := &fakeApprover{verdict: approval.Verdict{Allow: false, How: "denied", By: "terminal"}}
	h := start(t, Config{
		Upstreams: []Upstream{openaiUpstream(up)},
		Policy:    compileRules(t, testRules),
		Identity:  &identity.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"ml-engineers"}},
		Approver:  ap,
	})
	do := func(method, path, body string) *http.Response {
		req, _ := http.NewRequest(method, "https://openai.example.com"+path, strings.NewReader(body))
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cases := []struct {
		method, path, body string
		code               int
		kind, rule         string
	}{
		{"POST", "/v1/query", `{"sql":"DROP  TABLE users"}`, 403, errPolicy, "no-drop-table"},
		{"POST", "/v1/query", `{"sql":"select 1"}`, 200, "", ""},
		{"DELETE", "/v1/files/1", "", 403, "approval-denied", "confirm-deletes"},
		{"POST", "/v1/deploy/model", "", 403, errPolicy, "deploy-needs-group"},
	}
	for _, c := range cases {
		resp := do(c.method, c.path, c.body)
		if resp.StatusCode != c.code || resp.Header.Get("X-Crewgate-Error") != c.kind {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, resp.Header.Get("X-Crewgate-Error"), c.code, c.kind)
		}
	}
	// Only the allowed request reached the upstream, with its body intact.
	if seen := up.requests(); len(seen) != 1 || seen[0].URL.Path != "/v1/query" {
		t.Errorf("the upstream saw %d requests", len(seen))
	}
	if len(ap.asked) != 1 {
		t.Fatalf("asked %d times", len(ap.asked))
	}
	a := ap.asked[0]
	if a.Rule != "confirm-deletes" || a.Method != "DELETE" || a.Host != "openai.example.com" || a.Identity != "alice <alice@example.com>" || a.Reason != "deletes data" {
		t.Errorf("approval request = %+v", a)
	}

	ap.verdict = approval.Verdict{Allow: true, How: "once", By: "terminal"}
	if resp := do("DELETE", "/v1/files/1", ""); resp.StatusCode != 200 {
		t.Errorf("approved delete: %d", resp.StatusCode)
	}
	ap.verdict = approval.Verdict{How: "timeout"}
	if resp := do("DELETE", "/v1/files/1", ""); resp.StatusCode != 403 || resp.Header.Get("X-Crewgate-Error") != "approval-timeout" {
		t.Errorf("timed-out delete: %d %q", resp.StatusCode, resp.Header.Get("X-Crewgate-Error"))
	}
	if st := h.proxy.Stats(); st.Denied != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestApprovalFailsClosedWithoutApprover(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, testRules)})
	req, _ := http.NewRequest("DELETE", "https://openai.example.com/v1/files/1", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 || refusalOf(t, resp).Error != "approval-unavailable" {
		t.Errorf("%d", resp.StatusCode)
	}
	if len(up.requests()) != 0 {
		t.Error("an unapproved request reached the upstream")
	}
}

func TestPolicyDeniesTunnels(t *testing.T) {
	h := start(t, Config{DefaultAction: "tunnel", Policy: compileRules(t, testRules), Resolver: fakeResolver{"pastebin.example.org": "127.0.0.1"}})
	resp := rawConnect(t, h, "pastebin.example.org:443")
	if b := refusalOf(t, resp); resp.StatusCode != 403 || b.Error != errPolicy || b.Rule != "no-pastebin" {
		t.Errorf("CONNECT: %d %+v", resp.StatusCode, b)
	}
}

func TestApprovalPreviewIsMasked(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	ap := &fakeApprover{verdict: approval.Verdict{Allow: true, How: "once"}}
	h := start(t, Config{
		Upstreams: []Upstream{openaiUpstream(up)},
		Policy:    compileRules(t, "  - {name: confirm-posts, action: approve, match: {methods: [POST]}}\n"),
		Approver:  ap,
	})
	body := `{"note":"key AKIAIOSFODNN7EXAMPLE", "pad":"` + strings.Repeat("x", 4000) + `"}`
	resp, err := h.client.Post("https://openai.example.com/v1/x", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(ap.asked) != 1 {
		t.Fatal("not asked")
	}
	p := ap.asked[0].Preview
	if strings.Contains(p, "AKIA") || !strings.Contains(p, "[MASKED:aws_access_key]") || len(p) > maxPreview+64 || !strings.HasSuffix(p, "[...]") {
		t.Errorf("preview (%d bytes) = %.120q", len(p), p)
	}
	if seen := up.requests(); len(seen) != 1 {
		t.Fatalf("upstream saw %d requests", len(seen))
	}
}

// TestPreviewNeverShowsPartOfASecret: a key across the preview's cut must
// not show its first characters, which no detector would recognise.
func TestPreviewNeverShowsPartOfASecret(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	ap := &fakeApprover{verdict: approval.Verdict{Allow: true, How: "once"}}
	h := start(t, Config{
		Upstreams: []Upstream{openaiUpstream(up)},
		Policy:    compileRules(t, "  - {name: confirm-posts, action: approve, match: {methods: [POST]}}\n"),
		Approver:  ap,
	})
	for _, off := range []int{-10, -4, -1} {
		body := strings.Repeat("x ", (maxPreview+off)/2) + " AKIAIOSFODNN7EXAMPLE and more"
		resp, err := h.client.Post("https://openai.example.com/v1/x", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, a := range ap.asked {
		if strings.Contains(a.Preview, "AKIA") || !strings.HasSuffix(a.Preview, "[...]") {
			t.Errorf("preview ends %q", a.Preview[max(0, len(a.Preview)-40):])
		}
	}
}

// TestApprovalTargetIsTheEscapedPath: a session grant is bound to the path
// as sent, so a grant for /v1/files/a/b cannot cover /v1/files/a%2Fb, which
// an upstream may route elsewhere.
func TestApprovalTargetIsTheEscapedPath(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	ap := &fakeApprover{verdict: approval.Verdict{How: approval.HowDenied}}
	h := start(t, Config{Upstreams: []Upstream{openaiUpstream(up)}, Policy: compileRules(t, testRules), Approver: ap})
	rawInTunnel(t, h, "openai.example.com:443", "openai.example.com", "DELETE /v1/files/a%2Fb HTTP/1.1\r\nHost: openai.example.com\r\n\r\n")
	if len(ap.asked) != 1 || ap.asked[0].Path != "/v1/files/a%2Fb" || ap.asked[0].Port != 443 {
		t.Fatalf("asked %+v", ap.asked)
	}
}
