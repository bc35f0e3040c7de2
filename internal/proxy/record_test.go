package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/approval"
	"github.com/crewgate/crewgate/internal/audit"
)

// memRecorder keeps events in memory.
type memRecorder struct {
	mu     sync.Mutex
	events []audit.Event
	n      int
}

func (m *memRecorder) Record(e audit.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
}

func (m *memRecorder) NextID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	return fmt.Sprintf("r%d", m.n)
}

func (m *memRecorder) all() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Event(nil), m.events...)
}

func (m *memRecorder) json(t *testing.T) string {
	b, err := json.Marshal(m.all())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor waits until the recorder holds n events of type typ.
func (m *memRecorder) waitFor(t *testing.T, typ audit.Type, n int) []audit.Event {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		var got []audit.Event
		for _, e := range m.all() {
			if e.Type == typ {
				got = append(got, e)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events, want %d: %s", len(got), typ, n, m.json(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecordsEveryStepWithoutCredentials(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"AKIAIOSFODNN7EXAMPLE\"}}]}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"echo":%q}`, r.Header.Get("Authorization"))
	})
	other := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tunnelled") })
	rec := &memRecorder{}
	ap := &fakeApprover{verdict: approval.Verdict{Allow: true, How: "once", By: "terminal", Waited: 1500 * time.Millisecond}}
	h := start(t, Config{
		Upstreams: []Upstream{openaiUpstream(up)},
		Policy:    compileRules(t, "  - {name: confirm-deletes, action: approve, match: {methods: [DELETE]}}\n  - {name: no-drop, action: deny, match: {body: 'drop table'}}\n"),
		Approver:  ap, Recorder: rec, DefaultAction: "tunnel",
	})

	resp, body := get(t, h.client, "https://openai.example.com/v1/models", "Authorization", "Bearer "+placeholder, "Cookie", "session=abc")
	if resp.StatusCode != 200 || strings.Contains(body, realSecret) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	get(t, h.client, "https://openai.example.com/stream")
	req, _ := http.NewRequest("DELETE", "https://openai.example.com/v1/files/1", nil)
	if resp, err := h.client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("approved delete: %v", err)
	}
	post, _ := h.client.Post("https://openai.example.com/v1/q", "text/plain", strings.NewReader("please drop table users"))
	post.Body.Close()
	tc := clientVia(h.url, other.pool())
	get(t, tc, other.URL+"/")
	tc.CloseIdleConnections() // ends the tunnel

	responses := rec.waitFor(t, audit.TypeResponse, 4)
	rec.waitFor(t, audit.TypeTunnel, 1)
	all := rec.json(t)
	for _, secret := range []string{realSecret, "AKIAIOSFODNN7EXAMPLE", "session=abc", proxyCred, placeholder} {
		if strings.Contains(all, secret) {
			t.Errorf("the audit events contain %q", secret)
		}
	}

	reqs := rec.waitFor(t, audit.TypeRequest, 5)
	first := reqs[0].Request
	if first.Method != "GET" || first.Upstream != "openai" || first.Route != "intercept" || first.Decision != "allow" ||
		first.Headers.Get("Authorization") != "[REDACTED]" || first.Headers.Get("Cookie") != "[REDACTED]" {
		t.Errorf("first request event = %+v", first)
	}
	if r := responses[0].Response; r.Status != 200 || !r.Scanned || r.Masked["credential"] != 1 || r.Bytes != 37 || r.Form != "json" {
		t.Errorf("first response event = %+v", r)
	}
	var sawStream, sawApproval, sawDeny bool
	for _, e := range rec.all() {
		switch {
		case e.Type == audit.TypeResponse && e.Response.Streamed && e.Response.Masked["aws_access_key"] == 1:
			sawStream = true
		case e.Type == audit.TypeApproval && e.Approval.Decision == "allow" && e.Approval.By == "terminal" && e.Approval.WaitedMS == 1500:
			sawApproval = true
		case e.Type == audit.TypeRequest && e.Request.Decision == "deny" && e.Request.Rule == "no-drop" && e.Request.Refusal == errPolicy &&
			e.Request.Body != nil && e.Request.Body.SHA256 != "":
			sawDeny = true
		}
	}
	if !sawStream || !sawApproval || !sawDeny {
		t.Errorf("stream %v approval %v deny %v\n%s", sawStream, sawApproval, sawDeny, all)
	}
	tun := rec.waitFor(t, audit.TypeTunnel, 1)[0].Tunnel
	if tun.Host != other.addr() || tun.BytesUp == 0 || tun.BytesDown == 0 {
		t.Errorf("tunnel event = %+v", tun)
	}
}
