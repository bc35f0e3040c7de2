package creds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
	"github.com/crewgate/crewgate/internal/testidp"
)

const account = "default/refresh_token"

// tokenPost is one request to the token endpoint as it went on the wire,
// with the provider's answer.
type tokenPost struct {
	form   url.Values
	basic  string // client ID from Basic auth, "" when none
	status int
	answer map[string]any
}

func (p tokenPost) grant() string { return p.form.Get("grant_type") }

// wire is the provider's HTTP transport in the tests: it records every
// token-endpoint request and answer, runs a hook before forwarding one, and
// can make the provider unreachable (requests then go to a closed port).
type wire struct {
	closedAddr string
	down       atomic.Bool

	mu     sync.Mutex
	posts  []tokenPost
	before func(url.Values) // called before a token request is forwarded
}

func newWire(t *testing.T) *wire {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &wire{closedAddr: addr}
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	if w.down.Load() {
		r = r.Clone(r.Context())
		r.URL.Host = w.closedAddr
		return http.DefaultTransport.RoundTrip(r)
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/oauth/token") {
		return http.DefaultTransport.RoundTrip(r)
	}
	body, err := r.GetBody()
	if err != nil {
		return nil, err
	}
	raw, _ := io.ReadAll(body)
	form, _ := url.ParseQuery(string(raw))
	user, _, _ := r.BasicAuth()
	w.mu.Lock()
	hook := w.before
	w.mu.Unlock()
	if hook != nil {
		hook(form)
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	var m map[string]any
	_ = json.Unmarshal(answer, &m)
	w.mu.Lock()
	w.posts = append(w.posts, tokenPost{form: form, basic: user, status: resp.StatusCode, answer: m})
	w.mu.Unlock()
	return resp, nil
}

func (w *wire) setBefore(f func(url.Values)) {
	w.mu.Lock()
	w.before = f
	w.mu.Unlock()
}

// grants returns the recorded token requests of one grant type
// ("refresh_token" or "token-exchange").
func (w *wire) grants(kind string) []tokenPost {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []tokenPost
	for _, p := range w.posts {
		if strings.HasSuffix(p.grant(), kind) {
			out = append(out, p)
		}
	}
	return out
}

// secrets returns every token that crossed the wire, either way.
func (w *wire) secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.posts {
		for _, k := range []string{"refresh_token", "subject_token", "device_code"} {
			if v := p.form.Get(k); v != "" {
				out = append(out, v)
			}
		}
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if v, _ := p.answer[k].(string); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// noSecrets fails when any text shows a token that crossed the wire.
func (w *wire) noSecrets(t *testing.T, texts ...string) {
	t.Helper()
	secrets := w.secrets()
	if len(secrets) == 0 {
		t.Fatal("no tokens recorded: the check would prove nothing")
	}
	for _, s := range texts {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("a token appears in %q", s)
			}
		}
	}
}

// env is a logged-in user: a real IdP, a provider that talks to it over the
// recording wire, and the refresh token in a file store.
type env struct {
	idp   *testidp.IdP
	wire  *wire
	p     *identity.Provider
	store keyring.Store
	login *identity.Tokens
	logs  *syncBuffer
	clock *clock
}

type envOptions struct {
	user          string
	audienceParam string
	ownIdP        bool // a private IdP the test may stop; else the shared one
}

// setup logs a user in at an IdP and stores the refresh token. The session's
// provider talks to the IdP over a recording wire of its own.
func setup(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.user == "" {
		o.user = "alice"
	}
	var idp *testidp.IdP
	var tok *identity.Tokens
	var err error
	if o.ownIdP {
		idp = testidp.Start(t, testidp.WithInterval(time.Second))
		tok, err = deviceLogin(idp, o.user)
	} else {
		idp, tok, err = sharedLogin(o.user)
	}
	if err != nil {
		t.Fatalf("logging %s in: %v", o.user, err)
	}
	w := newWire(t)
	p, err := identity.Discover(context.Background(), identity.Config{
		Issuer: idp.Issuer, ClientID: testidp.ClientID, AudienceParam: o.audienceParam,
		HTTPClient: &http.Client{Transport: w, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	store := keyring.NewFile(filepath.Join(t.TempDir(), "secrets.json"))
	if err := store.Set(account, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	return &env{idp: idp, wire: w, p: p, store: store, login: tok, logs: &syncBuffer{}, clock: &clock{}}
}

// deviceLogin runs the device flow for user at idp. It takes the IdP's
// polling interval (at least a second).
func deviceLogin(idp *testidp.IdP, user string) (*identity.Tokens, error) {
	ctx := context.Background()
	p, err := identity.Discover(ctx, identity.Config{Issuer: idp.Issuer, ClientID: testidp.ClientID,
		Scopes: []string{"openid", "offline_access", "crew:read", "crew:write"}})
	if err != nil {
		return nil, err
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		return nil, err
	}
	if err := idp.Approve(dc.UserCode, user, testidp.Password); err != nil {
		return nil, err
	}
	return p.Poll(ctx, dc, identity.PollOptions{})
}

// The shared IdP logs alice in poolSize times at once when first used, so
// that the tests do not each wait out a polling interval.
const poolSize = 16

type loginResult struct {
	tok *identity.Tokens
	err error
}

var shared struct {
	once  sync.Once
	idp   *testidp.IdP
	err   error
	alice chan loginResult
	taken atomic.Int32
}

func sharedLogin(user string) (*testidp.IdP, *identity.Tokens, error) {
	shared.once.Do(func() {
		shared.idp, shared.err = testidp.New("127.0.0.1:0", testidp.WithInterval(time.Second))
		if shared.err != nil {
			return
		}
		shared.alice = make(chan loginResult, poolSize)
		for range poolSize {
			go func() {
				tok, err := deviceLogin(shared.idp, "alice")
				shared.alice <- loginResult{tok, err}
			}()
		}
	})
	if shared.err != nil {
		return nil, nil, shared.err
	}
	if user == "alice" && shared.taken.Add(1) <= poolSize {
		r := <-shared.alice
		return shared.idp, r.tok, r.err
	}
	tok, err := deviceLogin(shared.idp, user)
	return shared.idp, tok, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.idp != nil {
		shared.idp.Close()
	}
	os.Exit(code)
}

// session opens a session on the env's store with its clock and logger.
func (e *env) session(t *testing.T) *Session {
	t.Helper()
	s, err := NewSession(e.p, e.store, account)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	s.now = e.clock.now
	s.SetLogger(slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return s
}

func (e *env) stored(t *testing.T) string {
	t.Helper()
	v, err := e.store.Get(account)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// clock is the wall clock moved forward by an offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failingStore fails Set while fail is true.
type failingStore struct {
	keyring.Store
	fail atomic.Bool
}

var errStoreDown = errors.New("the keyring is locked")

func (f *failingStore) Set(account, value string) error {
	if f.fail.Load() {
		return errStoreDown
	}
	return f.Store.Set(account, value)
}

func hintOf(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}
