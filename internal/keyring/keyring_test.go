package keyring

import (
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	gokeyring "github.com/zalando/go-keyring"

	"github.com/crewgate/crewgate/internal/testenv"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10s", 10 * time.Second, true},
		{"1m30s", 90 * time.Second, true},
		{"300ms", 300 * time.Millisecond, true},
		{"10", 10 * time.Second, true},
		{"2.5", 2500 * time.Millisecond, true},
		{"0", 0, false},
		{"-1s", 0, false},
		{"-3", 0, false},
		{"NaN", 0, false},
		{"1e300", 0, false},
		{"soon", 0, false},
	} {
		got, err := parseTimeout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNewTimeout(t *testing.T) {
	for _, tc := range []struct {
		env  string
		opts Options
		want time.Duration
	}{
		{"", Options{}, DefaultTimeout},
		{"", Options{Interactive: true}, InteractiveTimeout},
		{"7", Options{Interactive: true}, 7 * time.Second},
		{"250ms", Options{}, 250 * time.Millisecond},
		{"7", Options{Timeout: time.Second}, time.Second},
	} {
		t.Setenv(TimeoutEnv, tc.env)
		s, err := New(tc.opts)
		if err != nil {
			t.Fatalf("env %q: %v", tc.env, err)
		}
		ks := s.(*keyringStore)
		if ks.timeout != tc.want || ks.service != "crewgate" || ks.chunk != DefaultChunkSize {
			t.Errorf("env %q %+v: timeout %v service %q chunk %d", tc.env, tc.opts, ks.timeout, ks.service, ks.chunk)
		}
	}

	t.Setenv(TimeoutEnv, "forever")
	_, err := New(Options{})
	var ke *Error
	if !errors.As(err, &ke) || !strings.Contains(ke.Hint(), TimeoutEnv) {
		t.Fatalf("bad %s: got %v, want *Error with a hint naming the variable", TimeoutEnv, err)
	}
}

func TestParseHeader(t *testing.T) {
	h := header{slot: 'b', n: 3, size: 5000}
	got, ok, err := parseHeader(h.String())
	if !ok || err != nil || got != h {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	if _, ok, _ := parseHeader("plain value"); ok {
		t.Fatal("plain value taken for a header")
	}
	sum := strings.Repeat("00", 32)
	for _, bad := range []string{
		headerMagic,
		headerMagic + "c:1:1:" + sum,
		headerMagic + "a:0:1:" + sum,
		headerMagic + "a:1025:1:" + sum,
		headerMagic + "a:1:-1:" + sum,
		headerMagic + "a:1:1:zz",
		headerMagic + "a:1:1:" + sum + ":extra",
	} {
		if _, ok, err := parseHeader(bad); !ok || !errors.Is(err, errCorrupt) {
			t.Errorf("parseHeader(%q): ok=%v err=%v, want a corrupt header", bad, ok, err)
		}
	}
}

func TestBadAccount(t *testing.T) {
	s, err := New(Options{Service: "crewgate-test-unused"})
	if err != nil {
		t.Fatal(err)
	}
	for _, acct := range []string{"", "a#b"} {
		var ke *Error
		if err := s.Set(acct, "x"); !errors.As(err, &ke) || ke.Hint() == "" {
			t.Errorf("Set(%q) = %v, want *Error with hint", acct, err)
		}
	}
}

// --- against the real keyring ---

// newRealStore returns a store on a service unique to the test, removed
// afterwards.
func newRealStore(t testing.TB, chunk int) *keyringStore {
	t.Helper()
	testenv.RequireKeyring(t)
	service := fmt.Sprintf("crewgate-test-%x", mrand.Uint64())
	s, err := New(Options{Service: service, ChunkSize: chunk, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := gokeyring.DeleteAll(service); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s.(*keyringStore)
}

// rawItems lists the accounts stored under the store's service, asking
// go-keyring directly for account and every chunk name up to 2*n+4 in both
// slots.
func rawItems(t *testing.T, s *keyringStore, account string, n int) []string {
	t.Helper()
	var found []string
	probe := func(name string) {
		_, err := gokeyring.Get(s.service, name)
		switch {
		case err == nil:
			found = append(found, name)
		case !errors.Is(err, gokeyring.ErrNotFound):
			t.Fatalf("probe %s: %v", name, err)
		}
	}
	probe(account)
	for _, slot := range []byte{'a', 'b'} {
		for i := range 2*n + 4 {
			probe(chunkName(account, slot, i))
		}
	}
	return found
}

// secretToolCount counts the items under the service with secret-tool, a
// second opinion that does not go through go-keyring.
func secretToolCount(t *testing.T, service string) int {
	t.Helper()
	if _, err := exec.LookPath("secret-tool"); err != nil {
		t.Log("secret-tool not installed; skipping the item count")
		return -1
	}
	out, err := exec.Command("secret-tool", "search", "--all", "service", service).CombinedOutput()
	if err != nil && len(out) > 0 && !strings.Contains(string(out), "No matching") {
		// secret-tool exits 1 when nothing matches
		t.Logf("secret-tool: %v: %s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "[/") {
			n++
		}
	}
	return n
}

func randomValue(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b) // arbitrary bytes: chunk borders may split UTF-8 sequences
}

func mustGet(t *testing.T, s Store, account, want string) {
	t.Helper()
	got, err := s.Get(account)
	if err != nil {
		t.Fatalf("Get(%q): %v", account, err)
	}
	if got != want {
		t.Fatalf("Get(%q): got %d bytes, want %d bytes (values differ)", account, len(got), len(want))
	}
}

func TestKeyringSmallRoundTrip(t *testing.T) {
	s := newRealStore(t, 0)
	if s.Kind() != "keyring" || !strings.Contains(s.Location(), s.service) {
		t.Errorf("Kind %q Location %q", s.Kind(), s.Location())
	}
	const acct = "default/refresh_token"
	if err := s.Set(acct, "small-secret"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, acct, "small-secret")
	// Small values are stored as is, so other tools can read them.
	if raw, err := gokeyring.Get(s.service, acct); err != nil || raw != "small-secret" {
		t.Fatalf("raw item: %q, %v", raw, err)
	}
	if err := s.Set(acct, "other"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, acct, "other")
	if err := s.Set(acct, ""); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, acct, "")
}

func TestKeyringLargeRoundTrip(t *testing.T) {
	s := newRealStore(t, 0)
	const acct = "default/refresh_token"
	v := randomValue(t, 8192)
	if err := s.Set(acct, v); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, acct, v)

	raw, err := gokeyring.Get(s.service, acct)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := parseHeader(raw)
	if !ok || err != nil || h.n != 4 || h.size != 8192 {
		t.Fatalf("header item %q: %+v %v %v", raw, h, ok, err)
	}
	for i := range h.n {
		c, err := gokeyring.Get(s.service, chunkName(acct, h.slot, i))
		if err != nil || len(c) > DefaultChunkSize {
			t.Fatalf("chunk %d: %d bytes, %v", i, len(c), err)
		}
	}
	if got := len(rawItems(t, s, acct, 4)); got != 5 {
		t.Fatalf("%d items, want header + 4 chunks", got)
	}
	if n := secretToolCount(t, s.service); n >= 0 && n != 5 {
		t.Fatalf("secret-tool sees %d items, want 5", n)
	}
}

func TestKeyringShrinkLeavesNoChunks(t *testing.T) {
	s := newRealStore(t, 0)
	const acct = "default/refresh_token"
	for _, step := range []struct {
		size, items int
	}{
		{8192, 5}, // header + 4 chunks in slot a
		{3000, 3}, // header + 2 chunks in slot b; slot a gone
		{9000, 6}, // back to slot a
		{10, 1},   // plain item only
		{5000, 4},
	} {
		v := randomValue(t, step.size)
		if err := s.Set(acct, v); err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, acct, v)
		if got := rawItems(t, s, acct, 5); len(got) != step.items {
			t.Fatalf("after a %d-byte value: items %q, want %d", step.size, got, step.items)
		}
		if n := secretToolCount(t, s.service); n >= 0 && n != step.items {
			t.Fatalf("after a %d-byte value: secret-tool sees %d items, want %d", step.size, n, step.items)
		}
	}
}

func TestKeyringDeleteAndNotFound(t *testing.T) {
	s := newRealStore(t, 0)
	if _, err := s.Get("absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get absent: %v, want ErrNotFound", err)
	}
	var ke *Error
	if _, err := s.Get("absent"); errors.As(err, &ke) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("not found must be plain ErrNotFound, got %#v", err)
	}
	if err := s.Delete("absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete absent: %v, want ErrNotFound", err)
	}
	for _, size := range []int{20, 8192} {
		acct := fmt.Sprintf("acct-%d", size)
		if err := s.Set(acct, randomValue(t, size)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(acct); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(acct); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if err := s.Delete(acct); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Delete: %v", err)
		}
		if got := rawItems(t, s, acct, 5); len(got) != 0 {
			t.Fatalf("left after Delete: %q", got)
		}
	}
	if n := secretToolCount(t, s.service); n > 0 {
		t.Fatalf("secret-tool still sees %d items", n)
	}
}

func TestKeyringRandomChunkSizes(t *testing.T) {
	s := newRealStore(t, 0)
	seed := mrand.Uint64()
	t.Logf("seed %d", seed)
	r := mrand.New(mrand.NewPCG(seed, 0))
	const acct = "random"
	for range 25 {
		s.chunk = 1 + r.IntN(700)
		size := r.IntN(6 * s.chunk)
		if r.IntN(4) == 0 {
			size = r.IntN(s.chunk + 1) // often exactly the plain path, or its border
		}
		v := randomValue(t, size)
		if err := s.Set(acct, v); err != nil {
			t.Fatalf("chunk %d size %d: %v", s.chunk, size, err)
		}
		mustGet(t, s, acct, v)
		want := 1
		if size > s.chunk {
			want += (size + s.chunk - 1) / s.chunk
		}
		if got := rawItems(t, s, acct, 6); len(got) != want {
			t.Fatalf("chunk %d size %d: items %q, want %d", s.chunk, size, got, want)
		}
	}
	if err := s.Delete(acct); err != nil {
		t.Fatal(err)
	}
	if got := rawItems(t, s, acct, 8); len(got) != 0 {
		t.Fatalf("left after Delete: %q", got)
	}
}

func TestKeyringValueLookingLikeHeader(t *testing.T) {
	s := newRealStore(t, 0)
	v := headerMagic + "a:1:1:" + strings.Repeat("00", 32)
	if err := s.Set("x", v); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "x", v)
}

func TestKeyringTornWrites(t *testing.T) {
	s := newRealStore(t, 0)
	const acct = "torn"
	v := randomValue(t, 5000) // header + 3 chunks in slot a
	if err := s.Set(acct, v); err != nil {
		t.Fatal(err)
	}

	// An interrupted Set wrote some new chunks into slot b but never
	// switched the header: the old value is still what Get returns, and
	// the next Set removes the leftovers.
	for i := range 5 {
		if err := gokeyring.Set(s.service, chunkName(acct, 'b', i), "partial"); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, s, acct, v)
	v2 := randomValue(t, 2100) // header + 2 chunks in slot b, leftovers b2..b4
	if err := s.Set(acct, v2); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, acct, v2)
	if got := rawItems(t, s, acct, 5); len(got) != 3 {
		t.Fatalf("items %q, want header + 2 chunks", got)
	}

	// Damaged or missing chunks are errors, never a wrong value.
	var second string // name of the active second chunk
	damage := map[string]func() error{
		"changed chunk": func() error { return gokeyring.Set(s.service, second, "garbage") },
		"missing chunk": func() error { return gokeyring.Delete(s.service, second) },
		"extra bytes": func() error {
			c, err := gokeyring.Get(s.service, second)
			if err != nil {
				return err
			}
			return gokeyring.Set(s.service, second, c+"x")
		},
		"bad header": func() error { return gokeyring.Set(s.service, acct, headerMagic+"b:2") },
	}
	for name, f := range damage {
		if err := s.Set(acct, v2); err != nil {
			t.Fatal(err)
		}
		raw, err := gokeyring.Get(s.service, acct)
		h, _, herr := parseHeader(raw)
		if err != nil || herr != nil {
			t.Fatalf("header: %v %v", err, herr)
		}
		second = chunkName(acct, h.slot, 1)
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := s.Get(acct)
		var ke *Error
		if !errors.As(err, &ke) || !errors.Is(err, errCorrupt) || ke.Hint() == "" || got != "" {
			t.Fatalf("%s: Get = %d bytes, %v; want a corrupt-value *Error", name, len(got), err)
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: damage reported as %v", name, err)
		}
		t.Logf("%s: %v (hint: %s)", name, err, ke.Hint())
	}
	// Deleting a damaged value still removes everything.
	if err := s.Delete(acct); err != nil {
		t.Fatal(err)
	}
	if got := rawItems(t, s, acct, 5); len(got) != 0 {
		t.Fatalf("left after Delete: %q", got)
	}
}

func TestKeyringConcurrentReadersAndWriter(t *testing.T) {
	s := newRealStore(t, 0)
	const acct = "busy"
	values := []string{randomValue(t, 4000), randomValue(t, 7000)}
	if err := s.Set(acct, values[0]); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := s.Get(acct)
			if err != nil || (got != values[0] && got != values[1]) {
				errc <- fmt.Errorf("reader saw %d bytes, %v", len(got), err)
				return
			}
		}
	}()
	for i := range 10 {
		if err := s.Set(acct, values[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
