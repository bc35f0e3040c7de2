package mask

import (
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

// countBudget is a Budget of a fixed size that never waits.
type countBudget struct {
	mu         sync.Mutex
	size, used int64
	peak       int64
}

func (b *countBudget) Reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

func (b *countBudget) Release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("released more than reserved")
	}
}

func TestBudget(t *testing.T) {
	doc := `{"password":"p","data":"` + strings.Repeat("x", 1<<20) + ` AKIAIOSFODNN7EXAMPLE"}`
	sse := "data: " + strings.Repeat("y", 200<<10) + " AKIAIOSFODNN7EXAMPLE\n\n"
	for _, tc := range []struct {
		name, ct, body string
		fields         []string
		size           int64
		form           string
		err            bool
	}{
		{"json fits", "application/json", doc, []string{"password"}, 4 << 20, "json", false},
		{"json without room, fields", "application/json", doc, []string{"password"}, 1 << 20, "json", true},
		{"json without room, no fields", "application/json", doc, nil, 1 << 20, "json-bytes", false},
		{"sse fits", "text/event-stream", sse, nil, 1 << 20, "sse", false},
		{"sse without room", "text/event-stream", sse, nil, 64 << 10, "sse-bytes", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &countBudget{size: tc.size}
			e := mustEngine(t, Config{JSONFields: tc.fields, Budget: b})
			rc, c, _ := e.Wrap(io.NopCloser(strings.NewReader(tc.body)), tc.ct, "")
			out, err := io.ReadAll(rc)
			if tc.err != errors.Is(err, ErrUninspectable) {
				t.Fatalf("err %v", err)
			}
			if !tc.err && (strings.Contains(string(out), "AKIAIOSFODNN7EXAMPLE") || c.Form() != tc.form) {
				t.Errorf("form %q, masked: %v", c.Form(), !strings.Contains(string(out), "AKIA"))
			}
			if tc.err && len(out) != 0 {
				t.Errorf("a refused body still gave %d bytes", len(out))
			}
			rc.Close()
			if b.used != 0 {
				t.Errorf("%d bytes still reserved after Close (peak %d)", b.used, b.peak)
			}
			if tc.form == "json" && !tc.err && b.peak < 2<<20 {
				t.Errorf("a 1 MiB document reserved only %d", b.peak)
			}
		})
	}
}
