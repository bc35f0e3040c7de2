package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/keyring"
)

// Cache timing.
const (
	// maxSkew is how long before its expiry a cached token is replaced.
	maxSkew = 30 * time.Second
	// noExpiryTTL is how long a token is reused when the provider gave no
	// expires_in.
	noExpiryTTL = time.Minute
	// fetchTimeout bounds one fetch, which runs detached from the caller's
	// context: a refresh abandoned after the provider rotated the token
	// would lose the new one and burn the grant.
	fetchTimeout = time.Minute
)

// Session is the login shared by all oidc upstreams of one run: one refresh
// token, used by one refresh at a time, so that rotation never burns the
// grant (the provider answers invalid_grant when a rotated refresh token is
// used again, and some providers then revoke the whole login).
//
// A rotated refresh token is written to the store before it is used again.
// When that write fails the refresh returns an error, the new token stays in
// memory, and the write is retried before the next refresh; the token is not
// used until it is stored. Before each refresh the store is read again, so a
// token rotated by another crewgate process sharing the login is picked up.
//
// Once the provider rejects the login (invalid_grant), every later call of
// every Source of the session fails at once with ErrLoginRequired.
type Session struct {
	p       *identity.Provider
	store   keyring.Store
	account string
	log     *slog.Logger
	now     func() time.Time // tests move it forward to expire cached tokens

	dead atomic.Pointer[error] // ErrLoginRequired with its cause, once the login is gone

	// mu is held across every use of the refresh token, HTTP round trip
	// included.
	mu      sync.Mutex
	rt      string
	unsaved bool   // rt was rotated but is not yet in the store
	base    cached // the unnarrowed access token, the subject of exchanges
}

// NewSession reads the refresh token stored under account (see config's
// RefreshTokenAccount). It returns an error matching ErrLoginRequired when
// none is stored; other keyring failures are returned as they are.
func NewSession(p *identity.Provider, store keyring.Store, account string) (*Session, error) {
	if p == nil || store == nil {
		return nil, errors.New("creds: NewSession needs a provider and a store")
	}
	rt, err := store.Get(account)
	if errors.Is(err, keyring.ErrNotFound) || (err == nil && rt == "") {
		return nil, fmt.Errorf("%w: no refresh token in %s", ErrLoginRequired, store.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("reading the refresh token: %w", err)
	}
	return &Session{p: p, store: store, account: account, rt: rt, log: slog.Default(), now: time.Now}, nil
}

// SetLogger sets where the session logs (default slog.Default()). Call it
// before the first Token or Check. Log lines never hold a token.
func (s *Session) SetLogger(l *slog.Logger) {
	if l != nil {
		s.log = l
	}
}

// String describes s without its tokens.
func (s *Session) String() string {
	return fmt.Sprintf("creds.Session{issuer:%s store:%s}", s.p.Issuer(), s.store.Location())
}

// GoString is String, so %#v shows no token.
func (s *Session) GoString() string { return s.String() }

// Format writes String for every verb.
func (s *Session) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// Check does one refresh now, so that `run` can refuse to start when the
// login is dead (the error then matches ErrLoginRequired: exit 3) and report
// a provider that is down or refuses the client with what failed and what
// to do (a Hint method). Its access token serves later exchanges.
//
// When ctx ends first Check returns ctx.Err(), but the refresh runs on
// (bounded by a minute) so that a rotated refresh token still gets stored.
func (s *Session) Check(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		t, err := s.refreshLocked(fctx, nil, nil)
		if err == nil {
			s.base = s.cache(t)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("checking the login: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deadErr is the reason the login is gone, or nil.
func (s *Session) deadErr() error {
	if p := s.dead.Load(); p != nil {
		return *p
	}
	return nil
}

// kill marks the login gone for good.
func (s *Session) kill(cause error) error {
	err := fmt.Errorf("%w: %w", ErrLoginRequired, cause)
	if s.dead.CompareAndSwap(nil, &err) {
		s.log.Warn("the login is no longer valid; every oidc upstream now fails until 'crewgate login'",
			"issuer", s.p.Issuer(), "error", cause.Error())
	}
	return s.deadErr()
}

// refreshLocked runs the refresh-token grant narrowed to scopes and
// resources. s.mu must be held.
func (s *Session) refreshLocked(ctx context.Context, scopes, resources []string) (*identity.Tokens, error) {
	if err := s.deadErr(); err != nil {
		return nil, err
	}
	if err := s.syncStoreLocked(); err != nil {
		return nil, err
	}
	used := s.rt
	t, err := s.p.Refresh(ctx, used, scopes, resources)
	if errors.Is(err, identity.ErrExpired) {
		// Another process sharing the login may have rotated the token
		// between our read and our use: try its token once.
		if v, gerr := s.store.Get(s.account); gerr == nil && v != "" && v != used {
			s.rt = v
			t, err = s.p.Refresh(ctx, v, scopes, resources)
		}
	}
	if err != nil {
		if errors.Is(err, identity.ErrExpired) {
			return nil, s.kill(err)
		}
		return nil, s.providerError(err)
	}
	if t.RefreshToken != "" && t.RefreshToken != s.rt {
		s.rt, s.unsaved = t.RefreshToken, true
		if err := s.saveLocked(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// syncStoreLocked makes the store and s.rt agree before s.rt is used: it
// writes a rotated token that is not yet stored, or else picks up a token
// another process stored.
func (s *Session) syncStoreLocked() error {
	if s.unsaved {
		return s.saveLocked()
	}
	v, err := s.store.Get(s.account)
	switch {
	case errors.Is(err, keyring.ErrNotFound) || (err == nil && v == ""):
		return s.kill(fmt.Errorf("the refresh token was removed from %s (by 'crewgate logout'?)", s.store.Location()))
	case err != nil:
		// The token in memory is the one we stored last; using it is safe.
		s.log.Warn("could not read the refresh token again; using the one in memory",
			"store", s.store.Location(), "error", err.Error())
	case v != s.rt:
		s.log.Info("using a refresh token rotated by another crewgate process", "store", s.store.Location())
		s.rt = v
	}
	return nil
}

// saveLocked writes s.rt to the store.
func (s *Session) saveLocked() error {
	if err := s.store.Set(s.account, s.rt); err != nil {
		s.log.Warn("could not save the rotated refresh token; keeping it in memory and retrying before its next use",
			"store", s.store.Location(), "error", err.Error())
		return fmt.Errorf("saving the rotated refresh token to %s: %w", s.store.Location(), err)
	}
	s.unsaved = false
	return nil
}

// providerError explains a failed token request that is not a dead login.
func (s *Session) providerError(err error) error {
	var oe *identity.OAuthError
	hint := fmt.Sprintf("the identity provider at %s could not be reached: check the network and that the provider is up, then retry", s.p.Issuer())
	if errors.As(err, &oe) {
		switch oe.Code {
		case "invalid_scope", "invalid_target":
			hint = "the login does not cover what this upstream asks for: run 'crewgate login' again, which asks for every oidc upstream's scopes and audience"
		default:
			hint = fmt.Sprintf("the identity provider at %s refused the request (%s): check issuer, client_id and the upstream's credential settings in the config", s.p.Issuer(), oe.Code)
		}
	}
	return &hintError{err: err, hint: hint}
}

// cached is a token and when to replace it.
type cached struct {
	value     string
	refreshAt time.Time // on the session's clock
	expiry    time.Time // on the session's clock; zero when unknown
}

// cache times t on the session's clock: it is replaced maxSkew before it
// expires, or at half its lifetime when that is shorter.
func (s *Session) cache(t *identity.Tokens) cached {
	now := s.now()
	if t.Expiry.IsZero() {
		return cached{value: t.AccessToken, refreshAt: now.Add(noExpiryTTL)}
	}
	// identity measures Expiry on the wall clock; carry the lifetime over
	// to the session's clock.
	life := max(time.Until(t.Expiry), 0)
	return cached{value: t.AccessToken, refreshAt: now.Add(life - min(maxSkew, life/2)), expiry: now.Add(life)}
}

func (c cached) fresh(now time.Time) bool { return c.value != "" && now.Before(c.refreshAt) }

func (c cached) unexpired(now time.Time) bool {
	return c.value != "" && !c.expiry.IsZero() && now.Before(c.expiry)
}

// baseToken returns an unnarrowed access token of the login, refreshing it
// when it is due.
func (s *Session) baseToken(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base.fresh(s.now()) {
		return s.base.value, nil
	}
	t, err := s.refreshLocked(ctx, nil, nil)
	if err != nil {
		return "", err
	}
	s.base = s.cache(t)
	return t.AccessToken, nil
}

// dropBase forgets the base token when it is still v (an exchange said it
// is no longer good).
func (s *Session) dropBase(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base.value == v {
		s.base = cached{}
	}
}

// describe names what a source asks for, for errors and logs.
func describe(scopes []string, audience string, exchange bool) string {
	var b strings.Builder
	if exchange {
		b.WriteString("exchanged ")
	}
	fmt.Fprintf(&b, "access token for scopes %q", scopes)
	if audience != "" {
		fmt.Fprintf(&b, " and audience %q", audience)
	}
	return b.String()
}
