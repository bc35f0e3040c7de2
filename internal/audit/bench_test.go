package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRecord measures Record throughput for a request/response pair of
// events like a proxied 1 KiB response makes, including the writer's work
// (Close waits for the queue to drain).
func BenchmarkRecord(b *testing.B) {
	ev := sampleEvents()
	req, resp := ev[0], ev[1]
	r, err := Open(b.TempDir(), "bench", sampleStart(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Record(req)
		r.Record(resp)
	}
	if err := r.Close(Event{}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "events/s")
}

// sessionDir writes n session logs (copies of the sample under new ids).
func sessionDir(tb testing.TB, n int) string {
	dir := tb.TempDir()
	data, err := os.ReadFile(writeSample(tb, tb.TempDir(), "template"))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("s%05d.jsonl", i)), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func TestListThousandSessionsIsFast(t *testing.T) {
	dir := sessionDir(t, 1000)
	// One session killed: List must count its lines.
	data, _ := os.ReadFile(filepath.Join(dir, "s00000.jsonl"))
	os.WriteFile(filepath.Join(dir, "s00000.jsonl"), data[:len(data)-30], 0o600)
	os.WriteFile(filepath.Join(dir, "broken.jsonl"), []byte("not json\n"), 0o600)

	start := time.Now()
	list, err := List(dir)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("List of 1000 sessions took %v", elapsed)
	}
	if len(list) != 1001 {
		t.Fatalf("%d sessions", len(list))
	}
	byID := map[string]Summary{}
	for _, s := range list {
		byID[s.ID] = s
	}
	if s := byID["broken"]; s.Problem == "" {
		t.Errorf("broken: %+v", s)
	}
	s := byID["s00001"]
	if s.Abrupt || s.ExitCode == nil || *s.ExitCode != 3 || s.Requests != 4 || s.Denied != 2 || s.Approved != 1 || s.Masked != 2 || s.Subject != "alice" || *s.DurationMS != 6000 {
		t.Errorf("s00001: %+v", s)
	}
	k := byID["s00000"]
	if !k.Abrupt || k.ExitCode != nil || k.Ended != nil || k.Requests != 4 || k.Denied != 2 {
		t.Errorf("killed session: %+v", k)
	}
	t.Logf("List of 1000 sessions: %v", elapsed)
}

func TestListMissingDirIsEmpty(t *testing.T) {
	list, err := List(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v", list, err)
	}
}

func BenchmarkList1000(b *testing.B) {
	dir := sessionDir(b, 1000)
	for b.Loop() {
		if _, err := List(dir); err != nil {
			b.Fatal(err)
		}
	}
}
