package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the SIGKILL test re-exec this binary as a recorder.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CREWGATE_AUDIT_CHILD"); dir != "" {
		recordForever(dir)
		return
	}
	os.Exit(m.Run())
}

// recordForever records large-ish events until it is killed.
func recordForever(dir string) {
	r, err := Open(dir, "killed", sampleStart(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tap := NewBodyTap(8192)
	tap.Write(bytes.Repeat([]byte("masked body text "), 600))
	body := tap.Body()
	for {
		id := r.NextID()
		r.Record(Event{Type: TypeRequest, ID: id, Request: &Request{Method: "POST", URL: "https://api.example.com/v1/x", Decision: DecisionAllow, Body: body}})
	}
}

func TestSIGKILLLeavesAValidLogUpToTheLastCompleteLine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CREWGATE_AUDIT_CHILD="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	path := Path(dir, "killed")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 2<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child recorded too little in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	res, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || !res.Abrupt || res.Lines < 10 || !strings.Contains(res.String(), "ended abruptly") {
		t.Fatalf("Verify = %+v (%s)", res, res)
	}
	data, _ := os.ReadFile(path)
	complete := bytes.Count(data, []byte("\n"))
	if res.Lines != complete {
		t.Errorf("%d lines verify, the file has %d complete lines", res.Lines, complete)
	}
	if res.Torn != (data[len(data)-1] != '\n') {
		t.Errorf("Torn = %v, last byte %q", res.Torn, data[len(data)-1])
	}
	t.Logf("%s (torn: %v)", res, res.Torn)
}

// failingFile makes writes fail while broken is set: the first write then
// lands half a line (as a full disk does) and reports ENOSPC.
type failingFile struct {
	logFile
	broken atomic.Bool
	slow   time.Duration
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.slow > 0 {
		time.Sleep(f.slow)
	}
	if f.broken.Load() {
		n, _ := f.logFile.Write(p[:len(p)/2])
		return n, &os.PathError{Op: "write", Path: "log", Err: syscall.ENOSPC}
	}
	return f.logFile.Write(p)
}

// warnings collects Warn calls.
type warnings struct {
	mu   sync.Mutex
	errs []error
}

func (w *warnings) warn(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

func (w *warnings) list() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

func TestDiskFailureStop(t *testing.T) {
	var ff *failingFile
	var w warnings
	r, err := Open(t.TempDir(), "s", sampleStart(), Options{OnError: OnErrorStop, Warn: w.warn,
		wrap: func(f logFile) logFile { ff = &failingFile{logFile: f}; return ff }})
	if err != nil {
		t.Fatal(err)
	}
	events := sampleEvents()
	r.Record(events[0])
	waitLines(t, r.Path(), 2)
	ff.broken.Store(true)
	for _, e := range events[1:] {
		r.Record(e)
	}
	select {
	case <-r.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("Failed was not closed")
	}
	if !errors.Is(r.Err(), syscall.ENOSPC) {
		t.Errorf("Err = %v", r.Err())
	}
	ff.broken.Store(false) // the disk comes back: the end line still gets written
	r.Record(events[1])    // dropped: recording stopped
	if err := r.Close(Event{}); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Close = %v", err)
	}
	if ws := w.list(); len(ws) != 1 || !strings.Contains(ws[0].Error(), "no space left") {
		t.Errorf("warnings = %v, want one about the disk", ws)
	}
	res, _ := Verify(r.Path())
	lg, _ := Read(r.Path())
	if !res.OK || res.Abrupt {
		t.Fatalf("Verify = %+v", res)
	}
	end := lg.Events[len(lg.Events)-1]
	if len(lg.Events) != 4 || lg.Events[2].Type != TypeGap || end.End.Totals.Dropped != int64(len(events)) {
		t.Errorf("events: %d, last %+v", len(lg.Events), end.End)
	}
}

func TestDiskFailureContinue(t *testing.T) {
	var ff *failingFile
	var w warnings
	r, err := Open(t.TempDir(), "s", sampleStart(), Options{OnError: OnErrorContinue, Warn: w.warn,
		wrap: func(f logFile) logFile { ff = &failingFile{logFile: f}; return ff }})
	if err != nil {
		t.Fatal(err)
	}
	events := sampleEvents()
	ff.broken.Store(true)
	for _, e := range events[:3] {
		r.Record(e)
	}
	// Mend the disk only once the writer has failed on all three: earlier,
	// a queued one would still be written and the count below would race.
	waitFor(t, func() bool { return r.Err() != nil && r.dropped.Load() == 3 })
	ff.broken.Store(false)
	for _, e := range events[3:] {
		r.Record(e)
	}
	if err := r.Close(Event{}); err == nil {
		t.Error("Close hid the disk failure")
	}
	select {
	case <-r.Failed():
		t.Error("continue mode stopped recording")
	default:
	}
	if ws := w.list(); len(ws) != 1 {
		t.Errorf("warnings = %v, want exactly one", ws)
	}
	res, _ := Verify(r.Path())
	lg, _ := Read(r.Path())
	if !res.OK || res.Abrupt {
		t.Fatalf("Verify = %+v", res)
	}
	var gaps, dropped int64
	for _, e := range lg.Events {
		if e.Gap != nil {
			gaps++
			dropped += e.Gap.Dropped
		}
	}
	end := lg.Events[len(lg.Events)-1].End
	// Three events were lost; everything after the disk came back is there.
	if gaps == 0 || dropped != 3 || end.Totals.Dropped != 3 || len(lg.Events) != 1+int(gaps)+len(events)-3+1 {
		t.Errorf("gaps %d dropped %d, %d events, end %+v", gaps, dropped, len(lg.Events), end)
	}
}

func TestQueueFullDropsLoudlyWithoutBlocking(t *testing.T) {
	var w warnings
	r, err := Open(t.TempDir(), "s", sampleStart(), Options{OnError: OnErrorContinue, Warn: w.warn, QueueSize: 4, MaxWait: time.Millisecond,
		wrap: func(f logFile) logFile { return &failingFile{logFile: f, slow: 20 * time.Millisecond} }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 200 {
		r.Record(sampleEvents()[0])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("200 Records took %v with a stalled disk", d)
	}
	r.Close(Event{})
	if ws := w.list(); len(ws) != 1 || !errors.Is(ws[0], ErrQueueFull) {
		t.Errorf("warnings = %v", ws)
	}
	lg, _ := Read(r.Path())
	end := lg.Events[len(lg.Events)-1].End
	if end.Totals.Dropped == 0 || end.Totals.Requests+end.Totals.Dropped != 200 {
		t.Errorf("totals %+v", end.Totals)
	}
	if res, _ := Verify(r.Path()); !res.OK {
		t.Errorf("Verify = %+v", res)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	waitFor(t, func() bool {
		data, _ := os.ReadFile(path)
		return bytes.Count(data, []byte("\n")) >= n
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5s")
}

// otlpLog is a log record as the test receiver decodes it.
type otlpLog struct {
	timeNano uint64
	severity uint64
	body     string
	attrs    map[string]string
	name     string
}

// receiver is a small OTLP/HTTP logs receiver: it decodes the protobuf wire
// format by hand (its own decoder, not the exporter's code).
type receiver struct {
	mu       sync.Mutex
	logs     []otlpLog
	resource map[string]string
	ctype    string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/logs" || req.Method != http.MethodPost {
		http.NotFound(w, req)
		return
	}
	data, _ := io.ReadAll(req.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.ctype = req.Header.Get("Content-Type")
	for _, rl := range fields(data)[1] { // ExportLogsServiceRequest.resource_logs
		f := fields(rl.b)
		for _, res := range f[1] { // ResourceLogs.resource
			rc.resource = attrs(fields(res.b)[1])
		}
		for _, sl := range f[2] { // ResourceLogs.scope_logs
			for _, lr := range fields(sl.b)[2] { // ScopeLogs.log_records
				lf := fields(lr.b)
				l := otlpLog{attrs: attrs(lf[6])}
				if v := lf[1]; len(v) > 0 {
					l.timeNano = v[0].n
				}
				if v := lf[2]; len(v) > 0 {
					l.severity = v[0].n
				}
				if v := lf[5]; len(v) > 0 {
					l.body = anyString(v[0].b)
				}
				if v := lf[12]; len(v) > 0 {
					l.name = string(v[0].b)
				}
				rc.logs = append(rc.logs, l)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (rc *receiver) got() []otlpLog {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]otlpLog(nil), rc.logs...)
}

type wireValue struct {
	n uint64
	b []byte
}

// fields splits a protobuf message into its fields by number.
func fields(b []byte) map[int][]wireValue {
	out := map[int][]wireValue{}
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			panic("bad tag")
		}
		b = b[n:]
		num, typ := int(key>>3), key&7
		switch typ {
		case 0:
			v, n := binary.Uvarint(b)
			b = b[n:]
			out[num] = append(out[num], wireValue{n: v})
		case 1:
			out[num] = append(out[num], wireValue{n: binary.LittleEndian.Uint64(b)})
			b = b[8:]
		case 2:
			l, n := binary.Uvarint(b)
			b = b[n:]
			out[num] = append(out[num], wireValue{b: b[:l]})
			b = b[l:]
		case 5:
			out[num] = append(out[num], wireValue{n: uint64(binary.LittleEndian.Uint32(b))})
			b = b[4:]
		default:
			panic(fmt.Sprintf("wire type %d", typ))
		}
	}
	return out
}

// attrs decodes repeated KeyValue with string or int values.
func attrs(kvs []wireValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		f := fields(kv.b)
		m[string(f[1][0].b)] = anyString(f[2][0].b)
	}
	return m
}

func anyString(b []byte) string {
	f := fields(b)
	if v, ok := f[1]; ok {
		return string(v[0].b)
	}
	if v, ok := f[3]; ok {
		return fmt.Sprint(int64(v[0].n))
	}
	return ""
}

func TestOTLPExportsEveryEvent(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var w warnings
	dir := t.TempDir()
	r, err := Open(dir, "s1", sampleStart(), Options{OTLPEndpoint: srv.URL, Warn: w.warn})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sampleEvents() {
		r.Record(e)
	}
	if err := r.Close(Event{Time: at(6000), End: &End{}}); err != nil {
		t.Fatal(err)
	}
	logs := rc.got()
	lines := readLines(t, r.Path())
	if len(logs) != len(lines) {
		t.Fatalf("collector got %d records, the log has %d lines; warnings %v", len(logs), len(lines), w.list())
	}
	if rc.ctype != "application/x-protobuf" || rc.resource["service.name"] != "crewgate" || rc.resource["service.version"] != "1.2.3" {
		t.Errorf("content type %q, resource %v", rc.ctype, rc.resource)
	}
	for i, l := range logs {
		if l.body+"\n" != string(lines[i]) {
			t.Errorf("record %d body %q, line %q", i, l.body, lines[i])
		}
		if l.attrs["crewgate.session"] != "s1" || l.attrs["crewgate.seq"] != fmt.Sprint(i+1) || l.name != "crewgate."+l.attrs["crewgate.event.type"] {
			t.Errorf("record %d: attrs %v name %q", i, l.attrs, l.name)
		}
	}
	if l := logs[1]; l.attrs["http.request.method"] != "GET" || l.timeNano != uint64(at(100).UnixNano()) || l.severity != sevInfo {
		t.Errorf("request record: %+v", l)
	}
	if l := logs[10]; l.attrs["crewgate.event.type"] != "leak" || l.severity != sevWarn {
		t.Errorf("leak record: %+v", l)
	}
	if ws := w.list(); len(ws) != 0 {
		t.Errorf("warnings: %v", ws)
	}
}

func TestOTLPCollectorDownNeverBlocksTheRun(t *testing.T) {
	// A port nothing listens on: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	// A collector that accepts and never answers.
	stuck := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stuck }))
	defer hang.Close()
	defer close(stuck)

	for name, endpoint := range map[string]string{"refused": down, "hanging": hang.URL} {
		t.Run(name, func(t *testing.T) {
			var w warnings
			r, err := Open(t.TempDir(), "s", sampleStart(), Options{OTLPEndpoint: endpoint, Warn: w.warn,
				OTLPClient: &http.Client{Timeout: 300 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for range 5000 {
				r.Record(sampleEvents()[0])
			}
			recording := time.Since(start)
			if err := r.Close(Event{}); err != nil {
				t.Errorf("Close = %v: a collector must never fail the run", err)
			}
			if total := time.Since(start); total > 8*time.Second || recording > 3*time.Second {
				t.Errorf("recording took %v, with Close %v", recording, total)
			}
			if ws := w.list(); len(ws) != 1 || !strings.Contains(ws[0].Error(), "local log is complete") {
				t.Errorf("warnings = %v, want exactly one", ws)
			}
			if res, _ := Verify(r.Path()); !res.OK || res.Lines != 5002 {
				t.Errorf("Verify = %+v", res)
			}
		})
	}
}

func TestOTLPEndpointPath(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":          "http://127.0.0.1:4318/v1/logs",
		"http://127.0.0.1:4318/":         "http://127.0.0.1:4318/v1/logs",
		"https://c.example/otlp/v1/logs": "https://c.example/otlp/v1/logs",
	} {
		x, err := newExporter(in, nil, "", func(error) {})
		if err != nil || x.url != want {
			t.Errorf("%s -> %v, %v", in, x, err)
		}
		x.close(0)
	}
	dir := t.TempDir()
	if _, err := Open(dir, "s", sampleStart(), Options{OTLPEndpoint: "ftp://x"}); err == nil {
		t.Error("a non-HTTP endpoint was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "s.jsonl")); err == nil {
		t.Error("a log was left behind")
	}
}
