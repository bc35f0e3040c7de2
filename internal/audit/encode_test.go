package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// eventGen builds an Event from bytes, so the property test (random bytes)
// and FuzzEncodeEvent (the fuzzer's bytes) explore the same space: every
// field, nil and empty maps and slices, awkward strings and times.
type eventGen struct{ data []byte }

func (g *eventGen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	c := g.data[0]
	g.data = g.data[1:]
	return c
}

func (g *eventGen) bool() bool { return g.byte()&1 == 1 }

func (g *eventGen) int64() int64 {
	var b [8]byte
	n := copy(b[:], g.data)
	g.data = g.data[n:]
	v := int64(binary.LittleEndian.Uint64(b[:]))
	switch g.byte() % 4 {
	case 0:
		return v % 1000
	case 1:
		return -(v % 100)
	case 2:
		return 0
	}
	return v
}

// stringPieces are what strings are made of: everything encoding/json
// escapes or replaces, and text it leaves alone.
var stringPieces = []string{
	"", "a", "Ada", "https://api.example.com/v1/x?a=1&b=2", "<script>", ">", "&", "&amp;",
	`"`, `\`, `\"`, "/", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t", " ",
	"\u2028", "\u2029", "\u2027", "\u202a", "é", "日本", "😀", "\U0010FFFF", "\uFFFD", "\uFEFF",
	"\xff", "\xfe", "\xc3", "\xc3(", "\xe2\x80", "\xe2\x80\xa8", "\xed\xa0\x80", "\xf0\x9f\x98", "\xf4\x90\x80\x80", "\xc0\xaf",
	"[REDACTED]", "Content-Type", "application/json", "null", "{}", "[]", "\\u2028",
}

func (g *eventGen) string() string {
	n := int(g.byte() % 8)
	var b []byte
	for range n {
		c := g.byte()
		if c >= 0xf0 { // raw bytes, whatever they are
			b = append(b, g.byte(), g.byte())
			continue
		}
		b = append(b, stringPieces[int(c)%len(stringPieces)]...)
	}
	return string(b)
}

func (g *eventGen) strings() []string {
	switch c := g.byte() % 4; c {
	case 0:
		return nil
	case 1:
		return []string{}
	default:
		ss := make([]string, int(g.byte()%4)+1)
		for i := range ss {
			ss[i] = g.string()
		}
		return ss
	}
}

func (g *eventGen) header() http.Header {
	switch g.byte() % 4 {
	case 0:
		return nil
	case 1:
		return http.Header{}
	}
	h := http.Header{}
	for range int(g.byte()%5) + 1 {
		h[g.string()] = g.strings()
	}
	return h
}

func (g *eventGen) counts() map[string]int {
	switch g.byte() % 3 {
	case 0:
		return nil
	case 1:
		return map[string]int{}
	}
	m := map[string]int{}
	for range int(g.byte()%5) + 1 {
		m[g.string()] = int(g.int64())
	}
	return m
}

func (g *eventGen) body() *Body {
	if g.bool() {
		return nil
	}
	return &Body{Size: g.int64(), SHA256: g.string(), Preview: g.string(), Truncated: g.bool(), Binary: g.bool()}
}

var genZones = []*time.Location{
	time.UTC, time.Local, time.FixedZone("", 0), time.FixedZone("CET", 3600), time.FixedZone("X", -(9*3600 + 30*60)),
	time.FixedZone("S", 45), time.FixedZone("N", -59), time.FixedZone("H", 14*3600), time.FixedZone("B", 23*3600+59*60),
	time.FixedZone("O", 24*3600), time.FixedZone("P", -25*3600), time.FixedZone("Q", 100*3600),
}

func (g *eventGen) time() time.Time {
	var t time.Time
	switch g.byte() % 6 {
	case 0:
		return time.Time{}
	case 1:
		t = time.Now() // carries a monotonic reading
	case 2:
		t = time.Date(2026, 3, 14, 9, 26, 53, int(g.int64()%1e9), time.UTC)
	case 3: // anywhere, including years json refuses
		t = time.Unix(g.int64(), g.int64())
	case 4: // near the edges of years 0 and 9999
		edge := []int64{-62167219200, 253402300799}[g.byte()%2]
		t = time.Unix(edge+g.int64()%(2*86400), int64(g.byte())*1e7)
	default:
		t = time.Date(int(g.byte())*40, time.Month(g.byte()%12+1), int(g.byte()%28+1), int(g.byte()%24), int(g.byte()%60), int(g.byte()%60), int(g.int64()%1e9), time.UTC)
	}
	t = t.In(genZones[int(g.byte())%len(genZones)])
	if g.bool() {
		t = t.Round(0)
	}
	return t
}

func (g *eventGen) event() *Event {
	e := &Event{Seq: g.int64(), Type: Type(g.string()), Time: g.time(), Session: g.string(), ID: g.string(), Prev: g.string(), Hash: g.string()}
	if g.bool() {
		e.Start = &Start{
			Identity: Identity{Subject: g.string(), Email: g.string(), Name: g.string(), Issuer: g.string(), Groups: g.strings()},
			Command:  g.strings(), ConfigDigest: g.string(), Version: g.string(), Nonce: g.string(),
		}
	}
	if g.bool() {
		e.Request = &Request{Method: g.string(), URL: g.string(), Upstream: g.string(), Route: Route(g.string()), Rule: g.string(),
			Decision: Decision(g.string()), Reason: g.string(), Refusal: g.string(), Headers: g.header(), Body: g.body()}
	}
	if g.bool() {
		e.Approval = &Approval{Decision: Decision(g.string()), Scope: g.string(), By: g.string(), How: g.string(), WaitedMS: g.int64()}
	}
	if g.bool() {
		e.Response = &Response{Status: int(g.int64()), Headers: g.header(), Bytes: g.int64(), Masked: g.counts(), Scanned: g.bool(),
			Form: g.string(), DurationMS: g.int64(), Streamed: g.bool(), Error: g.string(), Body: g.body()}
	}
	if g.bool() {
		e.Tunnel = &Tunnel{Host: g.string(), BytesUp: g.int64(), BytesDown: g.int64(), DurationMS: g.int64()}
	}
	if g.bool() {
		e.Leak = &Leak{Upstream: g.string(), To: g.string(), Where: g.string()}
	}
	if g.bool() {
		e.End = &End{ExitCode: int(g.int64()), DurationMS: g.int64(), Totals: Totals{Requests: g.int64(), Denied: g.int64(),
			Approved: g.int64(), Masked: g.int64(), Tunnels: g.int64(), Leaks: g.int64(), Dropped: g.int64()}}
	}
	if g.bool() {
		e.Gap = &Gap{Dropped: g.int64(), Reason: g.string()}
	}
	return e
}

// checkEncode fails unless appendEvent writes what json.Marshal writes, or
// declines where json.Marshal fails.
func checkEncode(t testing.TB, enc *eventEncoder, e *Event) {
	t.Helper()
	want, err := json.Marshal(e)
	prefix := []byte("prefix")
	got, ok := enc.appendEvent(prefix, e)
	if err != nil {
		if ok {
			t.Fatalf("json.Marshal fails (%v) but appendEvent wrote %q", err, got)
		}
		return
	}
	if !ok {
		t.Fatalf("appendEvent declined %#v; json.Marshal wrote %s", e, want)
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("appendEvent differs from json.Marshal\n got: %q\nwant: %q", got[len(prefix):], want)
	}
}

func TestEventLayoutIsKnown(t *testing.T) {
	for typ, want := range knownLayouts {
		if got := fieldLayout(typ); got != want {
			t.Errorf("%v changed: teach eventEncoder the change, then update knownLayouts\n got: %s\nwant: %s", typ, got, want)
		}
	}
	if !fastEncodeOK {
		t.Error("the fast event encoder is off: the recorder falls back to encoding/json")
	}
}

func TestEncodeEventMatchesJSON(t *testing.T) {
	var enc eventEncoder
	// The events the tests record, as they are and as the recorder fills them.
	all := append(sampleEvents(), sampleStart(), Event{End: &End{}}, Event{Gap: &Gap{}}, Event{Start: &Start{}}, Event{})
	for i := range all {
		checkEncode(t, &enc, &all[i])
		all[i].Seq, all[i].Session, all[i].Prev = int64(i+1), "s1", "abc"
		checkEncode(t, &enc, &all[i])
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1024)
	for range n {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		checkEncode(t, &enc, (&eventGen{buf}).event())
	}
}

// TestEncodeEveryASCIIAndRune runs every byte and a span of runes through
// both encoders one at a time.
func TestEncodeEveryASCIIAndRune(t *testing.T) {
	var enc eventEncoder
	for c := range 256 {
		checkEncode(t, &enc, &Event{Type: Type([]byte{byte(c)}), Session: "x" + string([]byte{byte(c)}) + "y"})
	}
	for r := rune(0x80); r < 0x3000; r++ {
		checkEncode(t, &enc, &Event{Session: "a" + string(r) + "b"})
	}
	for _, r := range []rune{0xD7FF, 0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF} {
		checkEncode(t, &enc, &Event{Session: string(r)})
	}
}

// FuzzEncodeEvent builds events from the fuzzer's bytes and compares the
// encoder with json.Marshal. The seed corpus is in testdata/fuzz.
func FuzzEncodeEvent(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("seed: an ordinary event <a href=\"x\">&amp;</a>\u2028\xff"))
	var enc eventEncoder
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEncode(t, &enc, (&eventGen{data}).event())
	})
}

// BenchmarkEncodeEvent compares the encoder with json.Marshal on the
// recorder's usual request and response events.
func BenchmarkEncodeEvent(b *testing.B) {
	ev := sampleEvents()[:2]
	for i := range ev {
		ev[i].Seq, ev[i].Session, ev[i].Prev = int64(i+1), "bench", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	}
	b.Run("fast", func(b *testing.B) {
		var enc eventEncoder
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			for i := range ev {
				buf, _ = enc.appendEvent(buf[:0], &ev[i])
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range ev {
				json.Marshal(&ev[i])
			}
		}
	})
}

// jsonLine is a log line as the recorder wrote it with encoding/json
// before it had its own encoder.
func jsonLine(t *testing.T, e Event) []byte {
	t.Helper()
	e.Hash = ""
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	content := data[:len(data)-1]
	sum := sha256.Sum256(content)
	return fmt.Appendf(nil, "%s,\"hash\":\"%x\"}\n", content, sum)
}

// TestRecordedLinesAreEncodingJSONLines records the sample session with the
// fast encoder and with the encoding/json fallback and checks every line
// against encoding/json.
func TestRecordedLinesAreEncodingJSONLines(t *testing.T) {
	defer func(ok bool) { fastEncodeOK = ok }(fastEncodeOK)
	for _, fast := range []bool{true, false} {
		fastEncodeOK = fast
		path := writeSample(t, t.TempDir(), "s1")
		lines := readLines(t, path)
		lg, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 13 || len(lg.Events) != len(lines) {
			t.Fatalf("fast %v: %d lines, %d events", fast, len(lines), len(lg.Events))
		}
		for i, e := range lg.Events {
			if want := jsonLine(t, e); !bytes.Equal(lines[i], want) {
				t.Errorf("fast %v, line %d:\n got: %s\nwant: %s", fast, i+1, lines[i], want)
			}
		}
	}
}

// TestRecordUnencodableTime: an event json.Marshal refuses becomes a gap
// line, and the log still verifies.
func TestRecordUnencodableTime(t *testing.T) {
	r, err := Open(t.TempDir(), "s1", sampleStart(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Record(Event{Type: TypeTunnel, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Tunnel: &Tunnel{Host: "x:443"}})
	r.Record(Event{Type: TypeTunnel, Time: at(10), Tunnel: &Tunnel{Host: "y:443"}})
	if err := r.Close(Event{Time: at(20), End: &End{}}); err != nil {
		t.Fatal(err)
	}
	lg, err := Read(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(lg.Events) != 4 || lg.Events[1].Type != TypeGap || lg.Events[1].Gap == nil || !lg.Events[1].Time.IsZero() ||
		lg.Events[2].Tunnel == nil || lg.Events[2].Tunnel.Host != "y:443" {
		t.Fatalf("events: %+v", lg.Events)
	}
	if res, err := Verify(r.Path()); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}
