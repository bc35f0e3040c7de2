package approval_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/crewgate/crewgate/internal/approval"
)

// clock is a settable Now hook.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func req(id, rule, host string) approval.Request {
	return approval.Request{ID: id, Session: "s1", Method: "DELETE", URL: "https://" + host + "/x", Host: host, Rule: rule, Reason: "deletes data"}
}

// ask runs q.Ask in a goroutine; the verdict arrives on the channel.
func ask(ctx context.Context, q *approval.Queue, r approval.Request) <-chan approval.Verdict {
	ch := make(chan approval.Verdict, 1)
	go func() { ch <- q.Ask(ctx, r) }()
	return ch
}

// waitPending waits, without sleeping, until q has n pending requests.
func waitPending(t *testing.T, q *approval.Queue, n int) []approval.Request {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		changed := q.Changed()
		if p := q.Pending(); len(p) == n {
			return p
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("want %d pending, have %d", n, len(q.Pending()))
		}
	}
}

// askNow asks and fails the test when Ask waits instead of answering at once.
func askNow(t *testing.T, q *approval.Queue, r approval.Request) approval.Verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	v := q.Ask(ctx, r)
	if ctx.Err() != nil {
		t.Errorf("Ask(%q) waited instead of answering at once", r.ID)
	}
	return v
}

func verdict(t *testing.T, ch <-chan approval.Verdict) approval.Verdict {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("Ask did not return")
		return approval.Verdict{}
	}
}

func notYet(t *testing.T, ch <-chan approval.Verdict) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("Ask returned %+v; it should still wait", v)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestPendingIsFIFO(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	var chans []<-chan approval.Verdict
	for i, id := range []string{"c", "a", "b"} {
		chans = append(chans, ask(t.Context(), q, req(id, "r", "h"+id)))
		waitPending(t, q, i+1)
	}
	var got []string
	for _, r := range q.Pending() {
		got = append(got, r.ID)
		if r.Asked.IsZero() || r.Deadline.Sub(r.Asked) != approval.DefaultTimeout {
			t.Errorf("%s: Asked %v, Deadline %v: want Deadline = Asked + %v", r.ID, r.Asked, r.Deadline, approval.DefaultTimeout)
		}
	}
	if strings.Join(got, ",") != "c,a,b" {
		t.Fatalf("pending order %v, want c,a,b", got)
	}
	// Deciding the middle one keeps the order of the rest.
	if err := q.Decide("a", approval.Deny, "terminal"); err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, chans[1]); v.Allow || v.How != "denied" || v.By != "terminal" {
		t.Errorf("verdict %+v, want denied by terminal", v)
	}
	if p := q.Pending(); len(p) != 2 || p[0].ID != "c" || p[1].ID != "b" {
		t.Errorf("pending after deciding a: %v", p)
	}
}

func TestAskAssignsUniqueIDs(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	ask(t.Context(), q, req("", "r", "h"))
	ask(t.Context(), q, req("", "r", "h"))
	waitPending(t, q, 2)
	ask(t.Context(), q, req(q.Pending()[0].ID, "r", "h")) // a caller reuses a pending ID
	p := waitPending(t, q, 3)
	seen := map[string]bool{}
	for _, r := range p {
		if r.ID == "" || seen[r.ID] {
			t.Fatalf("IDs not unique: %+v", p)
		}
		seen[r.ID] = true
	}
}

func TestAllowOnceDoesNotGrant(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	first := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	if err := q.Decide("1", approval.AllowOnce, "terminal"); err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, first); !v.Allow || v.How != "once" || v.By != "terminal" {
		t.Fatalf("verdict %+v, want allowed once by terminal", v)
	}
	second := ask(t.Context(), q, req("2", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	notYet(t, second)
}

func TestAllowSessionGrantsTheSameRequest(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	first := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	if err := q.Decide("1", approval.AllowSession, "terminal"); err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, first); !v.Allow || v.How != "session" {
		t.Fatalf("verdict %+v, want allowed for the session", v)
	}
	// The same rule, method, host, port and path, however the host is
	// spelled, passes without waiting.
	for _, host := range []string{"crm.example.com", "CRM.Example.com:443"} {
		v := askNow(t, q, req("", "confirm", host))
		if !v.Allow || v.How != "grant" || v.By != "" {
			t.Errorf("%s: verdict %+v, want allowed by the grant", host, v)
		}
	}
	// A different host, or a different rule on the same host, still waits.
	other := ask(t.Context(), q, req("3", "confirm", "other.example.com"))
	otherRule := ask(t.Context(), q, req("4", "other-rule", "crm.example.com"))
	waitPending(t, q, 2)
	notYet(t, other)
	notYet(t, otherRule)
}

// TestSessionGrantCoversOneTarget: "allow for the session" covers the same
// rule, method, host, port and path only. One approved record delete must
// not let the delete of a whole tenant through unasked.
func TestSessionGrantCoversOneTarget(t *testing.T) {
	del := func(id, url string) approval.Request {
		return approval.Request{ID: id, Method: "DELETE", URL: url, Rule: "confirm-deletes"}
	}
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	first := ask(t.Context(), q, del("1", "https://crm.example.com/v1/records/42"))
	p := waitPending(t, q, 1)
	if got := p[0]; got.Host != "crm.example.com" || got.Port != 443 || got.Path != "/v1/records/42" {
		t.Errorf("Ask filled in host %q, port %d, path %q; want crm.example.com, 443, /v1/records/42", got.Host, got.Port, got.Path)
	}
	if got, want := p[0].SessionScope(), "DELETE crm.example.com:443/v1/records/42"; got != want {
		t.Errorf("SessionScope = %q, want %q", got, want)
	}
	if err := q.Decide("1", approval.AllowSession, "terminal"); err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, first); !v.Allow || v.How != "session" || v.By != "terminal" {
		t.Fatalf("verdict %+v, want allowed for the session by terminal", v)
	}

	// The same target, however spelled, and with any query, is granted.
	for _, r := range []approval.Request{
		del("", "https://crm.example.com/v1/records/42"),
		del("", "https://CRM.example.com.:443/v1/records/42?cascade=false"),
		{Method: "DELETE", URL: "https://crm.example.com/v1/records/42", Host: "Crm.Example.Com", Port: 443, Path: "/v1/records/42", Rule: "confirm-deletes"},
	} {
		if v := askNow(t, q, r); !v.Allow || v.How != "grant" || v.By != "" {
			t.Errorf("%s: verdict %+v, want allowed by the grant", r.URL, v)
		}
	}

	// Anything else asks again.
	others := []approval.Request{
		del("2", "https://crm.example.com/v1/tenants/acme"),
		del("3", "https://crm.example.com/v1/records/43"),
		del("4", "https://crm.example.com/v1/records/42/"),
		del("5", "https://crm.example.com:8443/v1/records/42"),
		del("6", "http://crm.example.com/v1/records/42"), // port 80
		del("7", "https://other.example.com/v1/records/42"),
		{ID: "8", Method: "PUT", URL: "https://crm.example.com/v1/records/42", Rule: "confirm-deletes"},
		{ID: "9", Method: "DELETE", URL: "https://crm.example.com/v1/records/42", Rule: "another-rule"},
		// The caller's own port and path win over the URL's.
		{ID: "10", Method: "DELETE", URL: "https://crm.example.com/v1/records/42", Path: "/v1/records/%34%32", Rule: "confirm-deletes"},
		{ID: "11", Method: "DELETE", URL: "https://crm.example.com/v1/records/42", Port: 444, Rule: "confirm-deletes"},
	}
	var waiting []<-chan approval.Verdict
	for _, r := range others {
		waiting = append(waiting, ask(t.Context(), q, r))
	}
	waitPending(t, q, len(others))
	for i, ch := range waiting {
		select {
		case v := <-ch:
			t.Errorf("%s %s (port %d, path %q, rule %s) did not wait: %+v", others[i].Method, others[i].URL, others[i].Port, others[i].Path, others[i].Rule, v)
		default:
		}
	}
}

func TestSessionScope(t *testing.T) {
	for _, tt := range []struct {
		r    approval.Request
		want string
	}{
		{approval.Request{Method: "DELETE", URL: "https://crm.example.com/v1/records/42"}, "DELETE crm.example.com:443/v1/records/42"},
		{approval.Request{Method: "POST", URL: "http://[::1]:8080/a%2Fb?x=1"}, "POST [::1]:8080/a%2Fb"},
		{approval.Request{Method: "GET", URL: "https://h.example", Host: "H.example:8443"}, "GET h.example:8443"},
	} {
		q := approval.NewQueue(approval.Options{})
		ask(t.Context(), q, tt.r)
		if got := waitPending(t, q, 1)[0].SessionScope(); got != tt.want {
			t.Errorf("%s %s: SessionScope = %q, want %q", tt.r.Method, tt.r.URL, got, tt.want)
		}
		q.Close()
	}
}

func TestGrantExpiresAfterTTL(t *testing.T) {
	clk := newClock()
	q := approval.NewQueue(approval.Options{GrantTTL: time.Minute, Now: clk.Now})
	defer q.Close()
	first := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	q.Decide("1", approval.AllowSession, "terminal")
	verdict(t, first)

	clk.Add(59 * time.Second)
	if v := askNow(t, q, req("", "confirm", "crm.example.com")); v.How != "grant" {
		t.Fatalf("before the TTL: verdict %+v, want the grant", v)
	}
	clk.Add(time.Second)
	late := ask(t.Context(), q, req("3", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	notYet(t, late)
}

func TestTimeoutDenies(t *testing.T) {
	q := approval.NewQueue(approval.Options{Timeout: 30 * time.Millisecond})
	defer q.Close()
	start := time.Now()
	v := verdict(t, ask(t.Context(), q, req("1", "confirm", "crm.example.com")))
	if v.Allow || v.How != "timeout" || v.By != "" {
		t.Fatalf("verdict %+v, want a timeout deny", v)
	}
	if v.Waited < 30*time.Millisecond || time.Since(start) > 2*time.Second {
		t.Errorf("waited %v (%v in all), want about the timeout", v.Waited, time.Since(start))
	}
	if p := q.Pending(); len(p) != 0 {
		t.Errorf("still pending after the timeout: %v", p)
	}
	if err := q.Decide("1", approval.AllowOnce, "terminal"); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("Decide after the timeout: %v, want ErrNotPending", err)
	}
}

func TestContextCancelDenies(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	ctx, cancel := context.WithCancel(t.Context())
	ch := ask(ctx, q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	cancel()
	if v := verdict(t, ch); v.Allow || v.How != "shutdown" {
		t.Fatalf("verdict %+v, want a shutdown deny", v)
	}
	if v := q.Ask(ctx, req("2", "confirm", "crm.example.com")); v.Allow || v.How != "shutdown" {
		t.Fatalf("Ask with a done context: %+v, want a shutdown deny", v)
	}
	if p := q.Pending(); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
}

func TestCloseDeniesPendingAndLater(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	granted := ask(t.Context(), q, req("g", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	q.Decide("g", approval.AllowSession, "terminal")
	verdict(t, granted)

	a := ask(t.Context(), q, req("1", "confirm", "a.example.com"))
	b := ask(t.Context(), q, req("2", "confirm", "b.example.com"))
	waitPending(t, q, 2)
	q.Close()
	q.Close() // twice is fine
	for _, ch := range []<-chan approval.Verdict{a, b} {
		if v := verdict(t, ch); v.Allow || v.How != "shutdown" {
			t.Errorf("pending at Close: %+v, want a shutdown deny", v)
		}
	}
	// Later asks deny at once, even where a grant would have allowed.
	for _, host := range []string{"a.example.com", "crm.example.com"} {
		if v := askNow(t, q, req("", "confirm", host)); v.Allow || v.How != "shutdown" {
			t.Errorf("%s after Close: %+v, want a shutdown deny", host, v)
		}
	}
}

func TestHeadless(t *testing.T) {
	q := approval.NewQueue(approval.Options{Headless: true})
	defer q.Close()
	v := askNow(t, q, req("1", "confirm", "crm.example.com"))
	if v.Allow || v.How != "headless" {
		t.Fatalf("headless: %+v, want a headless deny", v)
	}
	if p := q.Pending(); len(p) != 0 {
		t.Fatalf("headless left pending requests: %v", p)
	}

	// Once someone can be asked, requests wait; a grant then outlives
	// headless mode.
	q.SetHeadless(false)
	ch := ask(t.Context(), q, req("2", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	q.Decide("2", approval.AllowSession, "terminal")
	verdict(t, ch)
	q.SetHeadless(true)
	if v := askNow(t, q, req("3", "confirm", "crm.example.com")); !v.Allow || v.How != "grant" {
		t.Errorf("headless with a grant: %+v, want the grant", v)
	}
	if v := askNow(t, q, req("4", "confirm", "other.example.com")); v.How != "headless" {
		t.Errorf("headless without a grant: %+v, want a headless deny", v)
	}

	// An attached approver (a control-socket watcher) can answer.
	detach := q.Attach()
	ch = ask(t.Context(), q, req("5", "confirm", "other.example.com"))
	waitPending(t, q, 1)
	q.Decide("5", approval.AllowOnce, "approve:test")
	if v := verdict(t, ch); !v.Allow {
		t.Errorf("headless with an approver: %+v, want allowed", v)
	}
	detach()
	detach()
	if v := askNow(t, q, req("6", "confirm", "other.example.com")); v.How != "headless" {
		t.Errorf("after detach: %+v, want a headless deny", v)
	}
}

func TestDecideErrors(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	if err := q.Decide("nope", approval.AllowOnce, "terminal"); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("unknown id: %v, want ErrNotPending", err)
	}
	ch := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	if err := q.Decide("1", approval.Choice("maybe"), "terminal"); err == nil {
		t.Error("a bad choice was accepted")
	}
	if err := q.Decide("1", approval.Deny, "terminal"); err != nil {
		t.Fatal(err)
	}
	verdict(t, ch)
	if err := q.Decide("1", approval.AllowOnce, "terminal"); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("decided twice: %v, want ErrNotPending", err)
	}
}

func TestOnDecisionOncePerVerdict(t *testing.T) {
	clk := newClock()
	q := approval.NewQueue(approval.Options{Now: clk.Now, Timeout: 30 * time.Millisecond})
	type call struct {
		r approval.Request
		v approval.Verdict
	}
	var mu sync.Mutex
	var calls []call
	q.OnDecision(func(r approval.Request, v approval.Verdict) {
		mu.Lock()
		calls = append(calls, call{r, v})
		mu.Unlock()
	})

	ch := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	waitPending(t, q, 1)
	clk.Add(7 * time.Second)
	q.Decide("1", approval.AllowSession, "terminal")
	got := verdict(t, ch)
	if got.Waited != 7*time.Second {
		t.Errorf("Waited %v, want 7s on the Now clock", got.Waited)
	}
	q.Ask(t.Context(), req("2", "confirm", "crm.example.com"))                // grant
	verdict(t, ask(t.Context(), q, req("3", "confirm", "other.example.com"))) // timeout
	q.SetHeadless(true)
	q.Ask(t.Context(), req("4", "confirm", "other.example.com")) // headless
	q.Close()
	q.Ask(t.Context(), req("5", "confirm", "other.example.com")) // shutdown

	mu.Lock()
	defer mu.Unlock()
	want := []string{"1 session terminal", "2 grant ", "3 timeout ", "4 headless ", "5 shutdown "}
	if len(calls) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i, c := range calls {
		if s := c.r.ID + " " + string(c.v.How) + " " + c.v.By; s != want[i] {
			t.Errorf("call %d: %q, want %q", i, s, want[i])
		}
		if c.r.Asked.IsZero() {
			t.Errorf("call %d: the request has no Asked time", i)
		}
	}
	if calls[0].v != got {
		t.Errorf("OnDecision got %+v, Ask returned %+v", calls[0].v, got)
	}
}

func TestChangedNotifies(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	c0 := q.Changed()
	select {
	case <-c0:
		t.Fatal("Changed closed without a change")
	default:
	}
	ch := ask(t.Context(), q, req("1", "confirm", "crm.example.com"))
	if !closed(c0) {
		t.Fatal("no notification for a new pending request")
	}
	waitPending(t, q, 1)
	c1 := q.Changed()
	q.Decide("1", approval.Deny, "terminal")
	if !closed(c1) {
		t.Fatal("no notification for a decision")
	}
	verdict(t, ch)
	c2 := q.Changed()
	q.Close()
	if !closed(c2) {
		t.Fatal("no notification for Close")
	}
}

// TestConcurrentDecisionsAndTimeouts races Decide against timeouts and
// cancellation: every Ask gets exactly one verdict and one OnDecision call.
func TestConcurrentDecisionsAndTimeouts(t *testing.T) {
	q := approval.NewQueue(approval.Options{Timeout: 5 * time.Millisecond})
	var mu sync.Mutex
	seen := map[string]int{}
	q.OnDecision(func(r approval.Request, _ approval.Verdict) {
		mu.Lock()
		seen[r.ID]++
		mu.Unlock()
	})
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		ctx, cancel := context.WithTimeout(t.Context(), time.Duration(i%7)*time.Millisecond)
		id := string(rune('A'+i%26)) + strings.Repeat("x", i/26)
		go func() {
			defer wg.Done()
			defer cancel()
			q.Ask(ctx, req(id, "r", "h"))
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%6) * time.Millisecond)
			q.Decide(id, approval.AllowOnce, "terminal")
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("%d requests reported, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s reported %d times", id, c)
		}
	}
	if p := q.Pending(); len(p) != 0 {
		t.Errorf("left pending: %v", p)
	}
}

func TestPreviewIsBounded(t *testing.T) {
	q := approval.NewQueue(approval.Options{})
	defer q.Close()
	r := req("1", "r", "h")
	r.Preview = strings.Repeat("é", approval.MaxPreview) // 2 bytes each
	ask(t.Context(), q, r)
	p := waitPending(t, q, 1)[0].Preview
	if len(p) > approval.MaxPreview || len(p) < approval.MaxPreview-1 || !utf8.ValidString(p) {
		t.Errorf("preview of %d bytes (valid UTF-8: %v), want at most %d", len(p), utf8.ValidString(p), approval.MaxPreview)
	}
}

// TestTimeoutsLeaveNoGoroutines: a waiting request holds only its own
// goroutine and a timer, and both are gone when it times out.
func TestTimeoutsLeaveNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	q := approval.NewQueue(approval.Options{Timeout: 2 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.Ask(t.Context(), req(strconv.Itoa(i), "r", "h"))
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after the timeouts", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
