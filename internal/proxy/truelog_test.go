package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
)

// TestTheLogTellsTheTruth drives the real proxy into a real recorder and
// reads the file back: each request once, its route and decision as made,
// a refused approval counted once, and the decision on disk before the
// upstream has answered.
func TestTheLogTellsTheTruth(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	t.Cleanup(plainSrv.Close)

	dir := t.TempDir()
	rec, err := audit.Open(dir, "truelog", audit.Event{Start: &audit.Start{Command: []string{"crew"}}}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ap := &fakeApprover{verdict: approval.Verdict{Allow: false, How: "denied", By: "terminal"}}
	h := start(t, Config{
		Upstreams: []Upstream{openaiUpstream(up)},
		Policy:    compileRules(t, testRules),
		Approver:  ap,
		Recorder:  rec,
	})

	if resp, _ := get(t, h.client, "https://openai.example.com/v1/models"); resp.StatusCode != 200 {
		t.Fatalf("allowed GET: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("DELETE", "https://openai.example.com/v1/files/1", nil)
	resp, err := h.client.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("approval denied: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, _ := get(t, clientVia(h.url, nil), plainSrv.URL+"/x"); resp.StatusCode != 200 {
		t.Fatalf("plain HTTP: %d", resp.StatusCode)
	}

	// A request whose upstream has not answered yet is already in the log.
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, h.client, "https://openai.example.com/slow")
	}()
	path := filepath.Join(dir, "truelog.jsonl")
	deadline := time.Now().Add(5 * time.Second)
	for {
		lg, err := audit.Read(path)
		if err == nil && hasRequest(lg, "https://openai.example.com/slow") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request's decision was not in the log while it waited for the upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	<-done

	if err := rec.Close(audit.Event{End: &audit.End{ExitCode: 0}}); err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]audit.Route{}
	decisions := map[string]audit.Decision{}
	var end *audit.End
	for _, e := range lg.Events {
		if r := e.Request; r != nil {
			if _, dup := routes[r.URL]; dup {
				t.Errorf("%s recorded twice", r.URL)
			}
			routes[r.URL], decisions[r.URL] = r.Route, r.Decision
		}
		if e.End != nil {
			end = e.End
		}
	}
	for url, want := range map[string]audit.Route{
		"https://openai.example.com/v1/models":  audit.RouteIntercept,
		"https://openai.example.com/v1/files/1": audit.RouteIntercept,
		plainSrv.URL + "/x":                     audit.RouteDirect,
	} {
		if routes[url] != want {
			t.Errorf("%s: route %q, want %q", url, routes[url], want)
		}
	}
	if d := decisions["https://openai.example.com/v1/files/1"]; d != audit.DecisionDeny {
		t.Errorf("the refused approval's request is %q", d)
	}
	if end == nil || end.Totals.Requests != 4 || end.Totals.Denied != 1 {
		t.Errorf("totals %+v, want 4 requests, 1 denied", end)
	}
	if st := h.proxy.Stats(); st.Denied != 1 {
		t.Errorf("proxy stats %+v, want 1 denied", st)
	}
}

func hasRequest(lg *audit.Log, url string) bool {
	for _, e := range lg.Events {
		if e.Request != nil && e.Request.URL == url {
			return true
		}
	}
	return false
}
