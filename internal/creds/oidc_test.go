package creds

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
)

const aud = "https://crewai.internal"

// TestNarrowedScopeOnTheWire: the refresh grant asks for the upstream's
// scopes and audience only, the IdP grants exactly those, and the next call
// is served from the cache.
func TestNarrowedScopeOnTheWire(t *testing.T) {
	t.Parallel()
	for _, param := range []string{"", "audience"} {
		t.Run("param="+param, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envOptions{audienceParam: param})
			s := e.session(t)
			src := s.OIDC([]string{"crew:read"}, aud, false)
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			posts := e.wire.grants("refresh_token")
			if len(posts) != 1 {
				t.Fatalf("%d refresh requests, want 1", len(posts))
			}
			want := "resource"
			if param != "" {
				want = param
			}
			f := posts[0].form
			if f.Get("scope") != "crew:read" || f.Get(want) != aud {
				t.Errorf("refresh form: scope=%q %s=%q; want crew:read and %s", f.Get("scope"), want, f.Get(want), aud)
			}
			if got := posts[0].answer["scope"]; got != "crew:read" || posts[0].answer["access_token"] != tok {
				t.Errorf("the IdP granted scope %v; Token returned its access token: %v", got, posts[0].answer["access_token"] == tok)
			}

			again, err := src.Token(context.Background())
			if err != nil || again != tok {
				t.Fatalf("second Token = %v, different token: %v", err, again != tok)
			}
			if n := len(e.wire.grants("refresh_token")); n != 1 {
				t.Errorf("cache miss: %d refresh requests after two calls, want 1", n)
			}
		})
	}
}

// TestRefreshOnExpiry: a token is kept until 30 s before it expires, then
// replaced; the refresh token rotated on the way is in the store.
func TestRefreshOnExpiry(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	src := s.OIDC([]string{"crew:write"}, "", false)
	first, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	life := time.Duration(e.wire.grants("refresh_token")[0].answer["expires_in"].(float64)) * time.Second
	if life < 2*time.Minute {
		t.Fatalf("expires_in = %v; the test expects minutes", life)
	}

	e.clock.advance(life - 31*time.Second)
	if tok, err := src.Token(context.Background()); err != nil || tok != first {
		t.Fatalf("31 s before expiry: %v, new token: %v; want the cached one", err, tok != first)
	}
	e.clock.advance(2 * time.Second)
	second, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if second == first || len(e.wire.grants("refresh_token")) != 2 {
		t.Fatalf("29 s before expiry: new token %v, %d refreshes; want a refresh", second != first, len(e.wire.grants("refresh_token")))
	}
	posts := e.wire.grants("refresh_token")
	if posts[1].form.Get("refresh_token") != posts[0].answer["refresh_token"] {
		t.Error("the second refresh did not use the rotated refresh token")
	}
	if e.stored(t) != posts[1].answer["refresh_token"] {
		t.Error("the store does not hold the newest refresh token")
	}
}

func TestCacheSkew(t *testing.T) {
	now := time.Now()
	s := &Session{now: func() time.Time { return now }}
	for _, tc := range []struct {
		life, refreshIn time.Duration
	}{
		{5 * time.Minute, 5*time.Minute - 30*time.Second},
		{40 * time.Second, 20 * time.Second}, // half the lifetime when shorter than 2 x 30 s
		{0, noExpiryTTL},
	} {
		tok := &identity.Tokens{AccessToken: "x"}
		if tc.life > 0 {
			tok.Expiry = time.Now().Add(tc.life)
		}
		c := s.cache(tok)
		if d := c.refreshAt.Sub(now) - tc.refreshIn; d > time.Second || d < -time.Second {
			t.Errorf("lifetime %v: refresh after %v, want %v", tc.life, c.refreshAt.Sub(now), tc.refreshIn)
		}
	}
}

// TestRotationUnderConcurrency: 20 goroutines across two upstream sources
// over several expiries. The IdP rotates the refresh token on every use and
// answers invalid_grant to a reused one, so one concurrent reuse fails the
// test; each refresh must also find its refresh token already in the store.
func TestRotationUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	var hookErrs []string
	var hookMu sync.Mutex
	e.wire.setBefore(func(f url.Values) {
		if f.Get("grant_type") != "refresh_token" {
			return
		}
		stored, err := e.store.Get(account)
		if err != nil || stored != f.Get("refresh_token") {
			hookMu.Lock()
			hookErrs = append(hookErrs, fmt.Sprintf("refresh request %d used a refresh token that is not the stored one (%v)", len(e.wire.grants("refresh_token"))+1, err))
			hookMu.Unlock()
		}
	})
	s := e.session(t)
	srcs := []Source{s.OIDC([]string{"crew:read"}, "", false), s.OIDC([]string{"crew:write"}, aud, false)}

	const rounds = 4
	for round := range rounds {
		e.clock.advance(10 * time.Minute) // every cached token is past its expiry
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				if _, err := srcs[i%2].Token(context.Background()); err != nil {
					errs <- fmt.Errorf("round %d, goroutine %d: %w", round, i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	posts := e.wire.grants("refresh_token")
	if len(posts) != 2*rounds {
		t.Errorf("%d refresh requests, want %d (one per source and round: callers share a fetch)", len(posts), 2*rounds)
	}
	seen := map[string]bool{}
	for i, p := range posts {
		rt := p.form.Get("refresh_token")
		if seen[rt] {
			t.Errorf("refresh request %d reused a refresh token", i+1)
		}
		seen[rt] = true
		if p.status != 200 {
			t.Errorf("refresh request %d answered %d: %v", i+1, p.status, p.answer["error"])
		}
	}
	if last := posts[len(posts)-1].answer["refresh_token"]; e.stored(t) != last {
		t.Error("the store does not hold the last rotated refresh token")
	}
	for _, msg := range hookErrs {
		t.Error(msg)
	}
}

// TestRotationNotStored: when the rotated token cannot be written, Token
// fails and the token is not used until the write succeeds.
func TestRotationNotStored(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	fs := &failingStore{Store: e.store}
	e.store = fs
	s := e.session(t)
	src := s.OIDC([]string{"crew:read"}, "", false)

	fs.fail.Store(true)
	_, err := src.Token(context.Background())
	if !errors.Is(err, errStoreDown) || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token with a failing store = %v, want the store's error", err)
	}
	if !strings.Contains(e.logs.String(), "could not save the rotated refresh token") {
		t.Errorf("no warning logged: %s", e.logs.String())
	}
	if _, err2 := src.Token(context.Background()); !errors.Is(err2, errStoreDown) {
		t.Fatalf("second Token with a failing store = %v", err2)
	}
	if n := len(e.wire.grants("refresh_token")); n != 1 {
		t.Fatalf("%d refresh requests; the unsaved token was used before it was stored", n)
	}

	fs.fail.Store(false)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("Token after the store recovered: %v", err)
	}
	posts := e.wire.grants("refresh_token")
	if len(posts) != 2 || posts[1].form.Get("refresh_token") != posts[0].answer["refresh_token"] || posts[1].status != 200 {
		t.Fatal("the second refresh did not use the rotated token kept in memory")
	}
	if e.stored(t) != posts[1].answer["refresh_token"] {
		t.Error("the store does not hold the newest refresh token")
	}
	e.wire.noSecrets(t, err.Error(), e.logs.String())
}

// TestRotatedByAnotherProcess: a token another crewgate process rotated and
// stored is picked up instead of reusing the burnt one.
func TestRotatedByAnotherProcess(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	other, err := e.p.Refresh(context.Background(), e.stored(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Set(account, other.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OIDC([]string{"crew:read"}, "", false).Token(context.Background()); err != nil {
		t.Fatalf("Token after another process rotated the token: %v", err)
	}
}

// TestLoginDead: invalid_grant gives ErrLoginRequired, and every later call
// of every source fails at once without asking the provider.
func TestLoginDead(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	if err := e.p.Revoke(context.Background(), e.login.RefreshToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	a, b := s.OIDC([]string{"crew:read"}, "", false), s.OIDC([]string{"crew:write"}, "", true)
	_, err := a.Token(context.Background())
	if !errors.Is(err, ErrLoginRequired) || !errors.Is(err, identity.ErrNotLoggedIn) {
		t.Fatalf("Token after revocation = %v, want ErrLoginRequired", err)
	}
	if !strings.Contains(err.Error(), "crewgate login") {
		t.Errorf("error does not say what to do: %v", err)
	}
	n := len(e.wire.posts)
	var errs []string
	for _, f := range []func() error{
		func() error { _, err := a.Token(context.Background()); return err },
		func() error { _, err := b.Token(context.Background()); return err },
		func() error { return s.Check(context.Background()) },
	} {
		err := f()
		if !errors.Is(err, ErrLoginRequired) {
			t.Errorf("later call = %v, want ErrLoginRequired", err)
		} else {
			errs = append(errs, err.Error())
		}
	}
	if len(e.wire.posts) != n {
		t.Errorf("%d more token requests after the login died; want none", len(e.wire.posts)-n)
	}
	e.wire.noSecrets(t, append(errs, err.Error(), e.logs.String())...)
}

// TestLogoutDuringRun: a refresh token removed from the store ends the session.
func TestLogoutDuringRun(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	if err := e.store.Delete(account); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OIDC(nil, "", false).Token(context.Background()); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token after logout = %v, want ErrLoginRequired", err)
	}
	if n := len(e.wire.grants("refresh_token")); n != 0 {
		t.Errorf("%d refresh requests after logout", n)
	}
	if _, err := NewSession(e.p, e.store, account); !errors.Is(err, ErrLoginRequired) {
		t.Errorf("NewSession without a refresh token = %v, want ErrLoginRequired", err)
	}
}

// TestCheck: a live login passes; a provider that is down gives an error that
// says what failed and what to do and is not ErrLoginRequired.
func TestCheck(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{ownIdP: true})
	s := e.session(t)
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// Check's token is the subject of exchanges: no second refresh.
	if _, err := s.OIDC([]string{"crew:read"}, "", true).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.wire.grants("refresh_token")); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}

	if err := e.idp.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Check(context.Background())
	if err == nil || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Check with the provider down = %v, want a provider error", err)
	}
	if !strings.Contains(err.Error(), "checking the login") || !strings.Contains(err.Error(), e.idp.Issuer+"oauth/token") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if h := hintOf(err); !strings.Contains(h, e.idp.Issuer) || !strings.Contains(h, "could not be reached") {
		t.Errorf("hint = %q", h)
	}
	e.wire.noSecrets(t, err.Error(), hintOf(err), e.logs.String())
}

// TestProviderDownMidRun: while the provider is unreachable a still-valid
// token is served, an expired one gives an error; after the provider is
// back the same source recovers.
func TestProviderDownMidRun(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	src := s.OIDC([]string{"crew:read"}, "", false)
	first, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.wire.down.Store(true)

	e.clock.advance(5*time.Minute - 10*time.Second) // due for renewal, not yet expired
	if tok, err := src.Token(context.Background()); err != nil || tok != first {
		t.Fatalf("provider down, token not expired: %v (same token: %v)", err, tok == first)
	}
	e.clock.advance(time.Minute) // expired
	_, err = src.Token(context.Background())
	if err == nil || errors.Is(err, ErrLoginRequired) || hintOf(err) == "" {
		t.Fatalf("provider down, token expired: %v, want a provider error with a hint", err)
	}

	e.wire.down.Store(false)
	tok, err := src.Token(context.Background())
	if err != nil || tok == first {
		t.Fatalf("after the provider is back: %v (new token: %v)", err, tok != first)
	}
	e.wire.noSecrets(t, err2str(err), e.logs.String())
}

func err2str(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestExchange: the exchange path trades the login's access token for one
// narrowed to the upstream's scope and audience, authenticating the client
// with Basic auth; two exchange sources share one refresh.
func TestExchange(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	a := s.OIDC([]string{"crew:read"}, aud, true)
	b := s.OIDC([]string{"crew:write"}, "", true)
	tokA, err := a.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if _, err := b.Token(context.Background()); err != nil {
		t.Fatalf("Token: %v", err)
	}
	refreshes, exchanges := e.wire.grants("refresh_token"), e.wire.grants("token-exchange")
	if len(refreshes) != 1 || refreshes[0].form.Get("scope") != "" {
		t.Fatalf("%d refreshes (scope %q); want one unnarrowed refresh for the subject token", len(refreshes), refreshes[0].form.Get("scope"))
	}
	if len(exchanges) != 2 {
		t.Fatalf("%d exchanges, want 2", len(exchanges))
	}
	x := exchanges[0]
	if x.form.Get("scope") != "crew:read" || x.form.Get("audience") != aud || x.basic != "crewgate" ||
		x.form.Get("subject_token") != refreshes[0].answer["access_token"] {
		t.Errorf("exchange request: scope=%q audience=%q basic=%q subject is the login's token: %v",
			x.form.Get("scope"), x.form.Get("audience"), x.basic, x.form.Get("subject_token") == refreshes[0].answer["access_token"])
	}
	if x.answer["scope"] != "crew:read" || x.answer["access_token"] != tokA {
		t.Errorf("exchange answer: scope %v, Token returned it: %v", x.answer["scope"], x.answer["access_token"] == tokA)
	}
	if again, err := a.Token(context.Background()); err != nil || again != tokA || len(e.wire.grants("token-exchange")) != 2 {
		t.Errorf("second Token: %v, cached: %v", err, again == tokA)
	}
}

// TestExchangeRefused: bob may not exchange; the error is the provider's,
// not a dead login, and names no token.
func TestExchangeRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{user: "bob"})
	s := e.session(t)
	_, err := s.OIDC([]string{"crew:read"}, "", true).Token(context.Background())
	var oe *identity.OAuthError
	if !errors.As(err, &oe) || errors.Is(err, ErrLoginRequired) || hintOf(err) == "" {
		t.Fatalf("exchange as bob = %v, want the provider's refusal with a hint", err)
	}
	if _, err := s.OIDC([]string{"crew:read"}, "", false).Token(context.Background()); err != nil {
		t.Errorf("the refresh path broke after a refused exchange: %v", err)
	}
	e.wire.noSecrets(t, err.Error(), e.logs.String())
}

// TestTokenContextCancel: a caller whose context ends stops waiting, and the
// shared fetch still completes for the others.
func TestTokenContextCancel(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	release := make(chan struct{})
	e.wire.setBefore(func(url.Values) { <-release })
	s := e.session(t)
	src := s.OIDC([]string{"crew:read"}, "", false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := src.Token(ctx); done <- err }()
	time.Sleep(50 * time.Millisecond) // let the fetch start
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Token = %v", err)
	}
	close(release)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("Token after a cancelled caller: %v", err)
	}
	if n := len(e.wire.grants("refresh_token")); n != 1 {
		t.Errorf("%d refreshes, want 1: the cancelled caller's fetch should have completed and been cached", n)
	}
}

// TestPrintingHidesTokens: sources and sessions print no secret.
func TestPrintingHidesTokens(t *testing.T) {
	t.Parallel()
	e := setup(t, envOptions{})
	s := e.session(t)
	src := s.OIDC([]string{"crew:read"}, aud, false)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", src, src, src, s, s, s, s)
	e.wire.noSecrets(t, out)
	if !slices.ContainsFunc([]string{out}, func(o string) bool { return strings.Contains(o, "crew:read") }) {
		t.Errorf("printing says nothing useful: %s", out)
	}
}
