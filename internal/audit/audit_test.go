package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// clock is a fake time source that moves on by step at every call.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// sampleEvents is a session with every kind of event, as a proxy would
// record it.
func sampleEvents() []Event {
	reqBody := NewBodyTap(16)
	reqBody.Write([]byte(`{"name":"Ada","email":"[MASKED:email]"}`))
	respBody := NewBodyTap(0)
	respBody.Write([]byte("{\"id\":42,\"owner\":\"[MASKED:email]\",\"key\":\"[MASKED:aws_access_key]\"}\n"))
	return []Event{
		{Type: TypeRequest, Time: at(100), ID: "r1", Request: &Request{
			Method: "GET", URL: "https://api.openai.com/v1/models?limit=2&after=x", Upstream: "openai", Route: "intercept",
			Decision: DecisionAllow, Headers: RedactHeaders(http.Header{"Authorization": {"Bearer sk-real-secret"}, "Accept": {"application/json"}}),
		}},
		{Type: TypeResponse, Time: at(340), ID: "r1", Response: &Response{
			Status: 200, Bytes: respBody.size, Masked: map[string]int{"email": 1, "aws_access_key": 1}, Scanned: true, Form: "json",
			DurationMS: 240, Streamed: true, Headers: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {Redacted}},
			Body: respBody.Body(),
		}},
		{Type: TypeRequest, Time: at(500), ID: "r2", Request: &Request{
			Method: "DELETE", URL: "https://crm.example.com/v1/contacts/7", Upstream: "crm", Route: "intercept",
			Rule: "confirm-deletes", Decision: DecisionApprove, Reason: "deletes data in the CRM",
			Headers: http.Header{"Content-Type": {"application/json"}}, Body: reqBody.Body(),
		}},
		{Type: TypeApproval, Time: at(3700), ID: "r2", Approval: &Approval{Decision: DecisionAllow, Scope: "once", By: "alice", How: "terminal", WaitedMS: 3200}},
		{Type: TypeResponse, Time: at(3800), ID: "r2", Response: &Response{Status: 204, Scanned: true, DurationMS: 100}},
		{Type: TypeRequest, Time: at(4000), ID: "r3", Request: &Request{
			Method: "POST", URL: "https://crm.example.com/v1/sql", Upstream: "crm", Route: "intercept",
			Rule: "no-drop-table", Decision: DecisionDeny, Refusal: "policy-deny", Reason: "matches the body pattern",
		}},
		{Type: TypeResponse, Time: at(4001), ID: "r3", Response: &Response{Status: 403, Bytes: 96, Scanned: true, Headers: http.Header{"X-Crewgate-Error": {"policy-deny"}}}},
		{Type: TypeTunnel, Time: at(5200), Tunnel: &Tunnel{Host: "github.com:443", BytesUp: 1900, BytesDown: 48000, DurationMS: 1100}},
		{Type: TypeRequest, Time: at(5300), ID: "r4", Request: &Request{
			Method: "POST", URL: "https://paste.example.net/new", Route: "direct", Decision: DecisionDeny, Refusal: "placeholder-leak",
			Reason: "the request carries the placeholder of upstream openai",
		}},
		{Type: TypeLeak, Time: at(5300), ID: "r4", Leak: &Leak{Upstream: "openai", To: "paste.example.net", Where: "body"}},
		{Type: TypeResponse, Time: at(5301), ID: "r4", Response: &Response{Status: 403, Bytes: 120, Scanned: false}},
	}
}

func sampleStart() Event {
	return Event{Time: t0, Start: &Start{
		Identity:     Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"ml"}},
		Command:      []string{"python3", "crew.py", "--topic", "Q3 report"},
		ConfigDigest: strings.Repeat("ab", 32), Version: "1.2.3",
	}}
}

// writeSample records the sample session in dir and returns its path.
func writeSample(t testing.TB, dir, id string) string {
	t.Helper()
	r, err := Open(dir, id, sampleStart(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sampleEvents() {
		r.Record(e)
	}
	if err := r.Close(Event{Time: at(6000), End: &End{ExitCode: 3}}); err != nil {
		t.Fatal(err)
	}
	return r.Path()
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))[:bytes.Count(data, []byte("\n"))]
}

func TestRecordWritesAChainedLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessions")
	path := writeSample(t, dir, "s1")
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	lg, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lg.Events) != 13 || lg.Abrupt || lg.Torn {
		t.Fatalf("read %d events, abrupt %v torn %v", len(lg.Events), lg.Abrupt, lg.Torn)
	}
	first := lg.Events[0]
	if first.Prev != first.Start.Nonce || len(first.Start.Nonce) != 64 {
		t.Errorf("first line prev %q, nonce %q", first.Prev, first.Start.Nonce)
	}
	for i, e := range lg.Events {
		if e.Seq != int64(i+1) || e.Session != "s1" {
			t.Errorf("line %d: seq %d session %q", i+1, e.Seq, e.Session)
		}
		if i > 0 && e.Prev != lg.Events[i-1].Hash {
			t.Errorf("line %d does not chain", i+1)
		}
	}
	end := lg.Events[12].End
	want := Totals{Requests: 4, Denied: 2, Approved: 1, Masked: 2, Tunnels: 1, Leaks: 1}
	if end == nil || end.Totals != want || end.ExitCode != 3 || end.DurationMS != 6000 {
		t.Errorf("end = %+v, want totals %+v", end, want)
	}
	res, err := Verify(path)
	if err != nil || !res.OK || res.Abrupt || res.Lines != 13 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	if data, _ := os.ReadFile(path); bytes.Contains(data, []byte("sk-real-secret")) {
		t.Error("the log holds a credential")
	}
}

func TestOpenRefusesBadIDsAndExistingLogs(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := Open(dir, id, sampleStart(), Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
	}
	writeSample(t, dir, "s1")
	if _, err := Open(dir, "s1", sampleStart(), Options{}); err == nil {
		t.Error("Open overwrote an existing log")
	}
}

func TestRedactHeadersRemovesEveryCredential(t *testing.T) {
	h := http.Header{}
	secrets := map[string]string{
		"Authorization":       "Bearer tok-1",
		"Proxy-Authorization": "Basic dG9rLTI=",
		"Cookie":              "session=tok-3",
		"Set-Cookie":          "session=tok-4; HttpOnly",
		"X-Api-Key":           "tok-5",
		"Api-Key":             "tok-6",
		"X-Upstream-Token":    "tok-7", // named by the upstream's credential header
	}
	for k, v := range secrets {
		h.Add(k, v)
	}
	h.Add("Cookie", "second=tok-8")
	h["authorization"] = []string{"tok-9"} // not canonical: must match anyway
	h.Set("Accept", "application/json")

	out := RedactHeaders(h, "x-upstream-token")
	for name, vals := range out {
		for _, v := range vals {
			if strings.Contains(v, "tok-") {
				t.Errorf("%s: %q survived", name, v)
			}
		}
	}
	if got := out.Values("Cookie"); len(got) != 2 || got[0] != Redacted {
		t.Errorf("Cookie = %q", got)
	}
	if out.Get("Accept") != "application/json" {
		t.Errorf("Accept = %q", out.Get("Accept"))
	}
	if h.Get("Authorization") != "Bearer tok-1" {
		t.Error("RedactHeaders changed its input")
	}
	if RedactHeaders(nil) != nil {
		t.Error("nil header")
	}
}

func TestBodyTap(t *testing.T) {
	tap := NewBodyTap(5)
	tap.Write([]byte("héllo"))
	tap.Write([]byte(" world"))
	b := tap.Body()
	// "héllo" is 6 bytes; the 5-byte preview must not cut é's pair in two.
	if b.Size != 12 || !b.Truncated || b.Preview != "héll" || b.Binary {
		t.Errorf("Body = %+v", b)
	}
	if sum := sha256.Sum256([]byte("héllo world")); b.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 = %s", b.SHA256)
	}
	bin := NewBodyTap(0)
	bin.Write([]byte{0x89, 'P', 'N', 'G', 0, 1})
	if b := bin.Body(); !b.Binary || b.Preview != "" {
		t.Errorf("binary Body = %+v", b)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	dir := t.TempDir()
	orig := readLines(t, writeSample(t, dir, "s1"))
	n := len(orig)
	rehash := func(line []byte) []byte {
		content := line[:len(line)-1-hashSuffixLen]
		h := sha256Hex(string(content))
		return []byte(string(content) + `,"hash":"` + h + "\"}\n")
	}
	cases := []struct {
		name    string
		edit    func([][]byte) [][]byte
		badLine int
		reason  string
	}{
		{"edited line", func(l [][]byte) [][]byte {
			l[6] = bytes.Replace(l[6], []byte(`"deny"`), []byte(`"allow"`), 1)
			return l
		}, 7, "edited"},
		{"edited line with its hash recomputed", func(l [][]byte) [][]byte {
			l[6] = rehash(bytes.Replace(l[6], []byte(`"deny"`), []byte(`"allow"`), 1))
			return l
		}, 8, "does not chain to line 7"},
		{"edited last line", func(l [][]byte) [][]byte {
			l[n-1] = bytes.Replace(l[n-1], []byte(`"exit_code":3`), []byte(`"exit_code":0`), 1)
			return l
		}, n, "edited"},
		{"edited first line", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`alice`), []byte(`bob`), 1)
			return l
		}, 1, "edited"},
		{"deleted line", func(l [][]byte) [][]byte { return slices.Delete(l, 4, 5) }, 5, "deleted"},
		{"deleted first line", func(l [][]byte) [][]byte { return l[1:] }, 1, "session_start"},
		{"reordered lines", func(l [][]byte) [][]byte { l[3], l[4] = l[4], l[3]; return l }, 4, "event 5 where event 4"},
		{"repeated line", func(l [][]byte) [][]byte { return slices.Insert(l, 4, l[3]) }, 5, "reordered or repeated"},
		{"line appended after the end", func(l [][]byte) [][]byte { return append(l, l[3]) }, n + 1, "appended after the session ended"},
		{"chained line appended after the end", func(l [][]byte) [][]byte {
			var e Event
			json.Unmarshal(l[n-1], &e)
			extra := fmt.Sprintf(`{"seq":%d,"type":"request","time":"2026-03-14T09:27:00Z","session":"s1","id":"r9","request":{"method":"GET","url":"https://x/","decision":"allow"},"prev":"%s"`, n+1, e.Hash)
			return append(l, []byte(extra+`,"hash":"`+sha256Hex(extra)+"\"}\n"))
		}, n + 1, "appended after the session ended"},
		{"torn line after the end", func(l [][]byte) [][]byte { return append(l, []byte(`{"seq":14,"ty`)) }, n + 1, "appended after"},
		{"a line from another session", func(l [][]byte) [][]byte {
			other := readLines(t, writeSample(t, dir, "s2"))
			l[4] = other[4]
			return l
		}, 5, "does not chain"},
		{"empty", func(l [][]byte) [][]byte { return nil }, 1, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := tc.edit(slices.Clone(orig))
			if bytes.Equal(bytes.Join(lines, nil), bytes.Join(orig, nil)) {
				t.Fatal("the edit changed nothing")
			}
			path := filepath.Join(t.TempDir(), "x.jsonl")
			os.WriteFile(path, bytes.Join(lines, nil), 0o600)
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.BadLine != tc.badLine || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("Verify = %+v\nwant bad line %d with %q", res, tc.badLine, tc.reason)
			}
		})
	}
}

func TestVerifyTornLastLineIsAbruptButValid(t *testing.T) {
	lines := readLines(t, writeSample(t, t.TempDir(), "s1"))
	path := filepath.Join(t.TempDir(), "x.jsonl")
	// Keep 7 whole lines and half of the 8th, as SIGKILL mid-write would.
	os.WriteFile(path, append(bytes.Join(lines[:7], nil), lines[7][:20]...), 0o600)
	res, err := Verify(path)
	if err != nil || !res.OK || !res.Torn || !res.Abrupt || res.Lines != 7 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	if !strings.Contains(res.String(), "ended abruptly") {
		t.Errorf("String() = %q", res.String())
	}
	lg, err := Read(path)
	if err != nil || len(lg.Events) != 7 || !lg.Torn || !lg.Abrupt {
		t.Fatalf("Read = %+v, %v", lg, err)
	}
	// Without a torn line but with no end: abrupt and OK.
	os.WriteFile(path, bytes.Join(lines[:7], nil), 0o600)
	if res, _ := Verify(path); !res.OK || res.Torn || !res.Abrupt || !strings.Contains(res.String(), "no session_end") {
		t.Errorf("Verify = %+v", res)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestRecordAfterCloseAndNilRecorder(t *testing.T) {
	var r *Recorder
	r.Record(Event{Type: TypeRequest})
	if r.NextID() != "" || r.Close(Event{}) != nil || r.Path() != "" {
		t.Error("nil recorder did something")
	}
	dir := t.TempDir()
	r, err := Open(dir, "s", sampleStart(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := r.NextID(), r.NextID(); a != "r1" || b != "r2" {
		t.Errorf("ids %s %s", a, b)
	}
	r.Close(Event{})
	r.Close(Event{}) // twice is harmless
	if res, _ := Verify(r.Path()); !res.OK || res.Lines != 2 {
		t.Errorf("Verify = %+v", res)
	}
}

func TestGoldenTimelineAndHAR(t *testing.T) {
	path := writeSample(t, t.TempDir(), "0ab1cd2ef3")
	lg, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := Verify(path)
	var show bytes.Buffer
	if err := WriteTimeline(&show, lg, &res); err != nil {
		t.Fatal(err)
	}
	golden(t, "show.golden", show.Bytes())

	var har bytes.Buffer
	if err := ExportHAR(path, &har); err != nil {
		t.Fatal(err)
	}
	golden(t, "session.har.golden", har.Bytes())
	validateHAR(t, har.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestReplayPacesAndSteps(t *testing.T) {
	lg, err := Read(writeSample(t, t.TempDir(), "s1"))
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	var out bytes.Buffer
	err = Replay(t.Context(), &out, lg, ReplayOptions{Speed: 2, MaxPause: time.Second, Sleep: func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// 100ms, 240ms, 160ms, 3200ms (capped), ... at twice the speed.
	if len(waits) < 4 || waits[0] != 50*time.Millisecond || waits[1] != 120*time.Millisecond || waits[3] != time.Second {
		t.Errorf("waits = %v", waits)
	}
	for _, want := range []string{"[1/12]", "Authorization: [REDACTED]", "| {\"name\":\"Ada\",\"e", "... 3.2s later", "[12/12]", "session end: exit 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay lacks %q:\n%s", want, out.String())
		}
	}
	steps := 0
	out.Reset()
	err = Replay(t.Context(), &out, lg, ReplayOptions{Step: func() (bool, error) { steps++; return steps < 3, nil }})
	if err != nil || steps != 3 || !strings.Contains(out.String(), "[2/12]") || strings.Contains(out.String(), "[3/12]") {
		t.Errorf("step replay: steps %d err %v\n%s", steps, err, out.String())
	}
	stop := errors.New("stop")
	if err := Replay(t.Context(), &out, lg, ReplayOptions{Step: func() (bool, error) { return false, stop }}); !errors.Is(err, stop) {
		t.Errorf("err = %v", err)
	}
}

// TestTimelineEscapesWhatTheCrewControlled: a crew can put escape sequences
// in URLs, headers and bodies; reading its session must not run them.
func TestTimelineEscapesWhatTheCrewControlled(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, "s", sampleStart(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := NewBodyTap(0)
	body.Write([]byte("{\"q\":\"\x1b[2J\x1b]0;owned\x07\"}\nnext line"))
	r.Record(Event{Type: TypeRequest, ID: "r1", Request: &Request{
		Method: "GET", URL: "https://api.example.com/\x1b[31mred\u202e", Decision: DecisionAllow,
		Headers: http.Header{"X-Evil": {"\x1b[1A"}}, Body: body.Body(),
	}})
	r.Close(Event{})
	lg, err := Read(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	var show, replay bytes.Buffer
	if err := WriteTimeline(&show, lg, nil); err != nil {
		t.Fatal(err)
	}
	if err := Replay(context.Background(), &replay, lg, ReplayOptions{Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"show": show.String(), "replay": replay.String()} {
		if strings.ContainsAny(out, "\x1b\x07\u202e") {
			t.Errorf("%s passes control characters through:\n%q", name, out)
		}
		if !strings.Contains(out, `\x1b[31mred\u202e`) {
			t.Errorf("%s does not show the escapes:\n%s", name, out)
		}
	}
	if !strings.Contains(replay.String(), `\x1b[2J`) || !strings.Contains(replay.String(), "next line") {
		t.Errorf("replay body:\n%s", replay.String())
	}
}
