package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
)

// OIDC returns the Source for one upstream. Without exchange its token comes
// from the refresh-token grant narrowed to scopes, with audience (when set)
// sent as the resource under the provider's audience parameter. With
// exchange it is an RFC 8693 exchange of the login's unnarrowed access token
// for one narrowed to scopes and audience.
//
// The token is cached until shortly before it expires (30 s, or half its
// lifetime when that is shorter). Concurrent callers share one fetch, which
// runs detached from any one caller's context (bounded by a minute); a
// caller whose context ends stops waiting. When a fetch fails but the cached
// token has not yet expired, that token is returned instead. After the
// session has hit ErrLoginRequired every call fails at once with it.
func (s *Session) OIDC(scopes []string, audience string, exchange bool) Source {
	return &oidcSource{s: s, scopes: slices.Clone(scopes), audience: audience, exchange: exchange}
}

type oidcSource struct {
	s        *Session
	scopes   []string
	audience string
	exchange bool

	mu   sync.Mutex
	tok  cached
	call *flight // the fetch in progress, nil when none
}

// flight is one fetch that several callers wait for.
type flight struct {
	done chan struct{}
	tok  string
	err  error
}

// Token returns a cached access token, or fetches a new one.
func (o *oidcSource) Token(ctx context.Context) (string, error) {
	if err := o.s.deadErr(); err != nil {
		return "", err
	}
	o.mu.Lock()
	if o.tok.fresh(o.s.now()) {
		v := o.tok.value
		o.mu.Unlock()
		return v, nil
	}
	c := o.call
	if c == nil {
		c = &flight{done: make(chan struct{})}
		o.call = c
		go o.fetch(ctx, c)
	}
	o.mu.Unlock()
	select {
	case <-c.done:
		return c.tok, c.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (o *oidcSource) fetch(ctx context.Context, c *flight) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	t, err := o.obtain(ctx)

	o.mu.Lock()
	defer func() {
		o.call = nil
		o.mu.Unlock()
		close(c.done)
	}()
	now := o.s.now()
	switch {
	case err == nil:
		o.tok = o.s.cache(t)
		c.tok = t.AccessToken
		o.s.log.Debug("obtained an access token", "for", o.String(), "scopes", t.Scopes)
	case !errors.Is(err, ErrLoginRequired) && o.tok.unexpired(now):
		// Keep serving while the old token lasts; the next call tries again.
		o.s.log.Warn("could not renew an access token; using the current one until it expires",
			"for", o.String(), "expires_in", o.tok.expiry.Sub(now).Round(time.Second).String(), "error", err.Error())
		c.tok = o.tok.value
	default:
		c.err = fmt.Errorf("getting an %s: %w", describe(o.scopes, o.audience, o.exchange), err)
	}
}

// obtain asks the provider for a new token.
func (o *oidcSource) obtain(ctx context.Context) (*identity.Tokens, error) {
	if !o.exchange {
		var resources []string
		if o.audience != "" {
			resources = []string{o.audience}
		}
		o.s.mu.Lock()
		defer o.s.mu.Unlock()
		return o.s.refreshLocked(ctx, o.scopes, resources)
	}
	base, err := o.s.baseToken(ctx)
	if err != nil {
		return nil, err
	}
	t, err := o.s.p.Exchange(ctx, base, o.scopes, o.audience)
	if err != nil {
		var oe *identity.OAuthError
		if errors.As(err, &oe) && (oe.Code == "invalid_grant" || oe.Code == "invalid_request" || oe.Code == "invalid_token") {
			// The subject token may have been revoked: start from a fresh
			// one next time.
			o.s.dropBase(base)
		}
		return nil, o.s.providerError(err)
	}
	return t, nil
}

// String describes the source without its token.
func (o *oidcSource) String() string {
	return "creds.OIDC(" + describe(o.scopes, o.audience, o.exchange) + ")"
}

// GoString is String, so %#v shows no token.
func (o *oidcSource) GoString() string { return o.String() }

// Format writes String for every verb.
func (o *oidcSource) Format(f fmt.State, _ rune) { io.WriteString(f, o.String()) }
