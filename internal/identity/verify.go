package identity

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Verify checks t's ID token with go-oidc (signature against the provider's
// JWKS, iss, aud = client_id, exp) and returns the identity it proves.
// Groups come from Config.GroupsClaim, a string or a list of strings.
// TokenStorage is left for the caller to set.
func (p *Provider) Verify(ctx context.Context, t *Tokens) (*Identity, error) {
	if t == nil || t.IDToken == "" {
		return nil, errors.New("verifying the ID token: the provider returned no ID token; is the openid scope requested?")
	}
	v := p.oidc.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	tok, err := v.Verify(oidc.ClientContext(ctx, p.hc), t.IDToken)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return nil, fmt.Errorf("verifying the ID token: it expired at %s (now %s); check this machine's clock: %w",
				exp.Expiry.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339), err)
		}
		return nil, fmt.Errorf("verifying the ID token from %s: %w", p.meta.Issuer, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("verifying the ID token: decoding claims: %w", err)
	}
	for _, k := range []string{"nonce", "at_hash", "c_hash"} {
		delete(claims, k)
	}
	groups, err := stringList(claims[p.cfg.GroupsClaim])
	if err != nil {
		return nil, fmt.Errorf("verifying the ID token: claim %q: %w", p.cfg.GroupsClaim, err)
	}
	email, _ := claims["email"].(string)
	name, _ := claims["name"].(string)
	return &Identity{
		Issuer:     tok.Issuer,
		ClientID:   p.cfg.ClientID,
		Subject:    tok.Subject,
		Email:      email,
		Name:       name,
		Groups:     groups,
		Claims:     claims,
		Scopes:     append([]string(nil), t.Scopes...),
		LoggedInAt: time.Now().UTC().Round(0),
		Expiry:     tok.Expiry.UTC(),
	}, nil
}

// stringList reads a claim that is absent, a string, or a list of strings.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return []string{}, nil
	case string:
		if v == "" {
			return []string{}, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("has an element of type %T; want strings", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("has type %T; want a string or a list of strings", v)
}

// Refresh trades refreshToken for new tokens (RFC 6749 §6), asking for
// scopes (a subset of the login's, to narrow the access token; nil keeps the
// grant's) and resources (RFC 8707 audiences, sent under Config.AudienceParam).
// When the provider does not rotate the refresh token, the result carries the
// old one, so callers can always store Tokens.RefreshToken. An invalid_grant
// answer satisfies errors.Is(err, ErrExpired): the user must log in again.
func (p *Provider) Refresh(ctx context.Context, refreshToken string, scopes, resources []string) (*Tokens, error) {
	if refreshToken == "" {
		return nil, fmt.Errorf("refreshing the login: %w: no refresh token", ErrNotLoggedIn)
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {p.cfg.ClientID},
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	p.resourceParams(form, resources)
	tr, err := p.tokenRequest(ctx, form)
	if err != nil {
		var oe *OAuthError
		if errors.As(err, &oe) && oe.Code == "invalid_grant" {
			return nil, fmt.Errorf("refreshing the login: %w: %w", ErrExpired, err)
		}
		return nil, fmt.Errorf("refreshing the login: %w", err)
	}
	t, err := tr.tokens(scopes)
	if err != nil {
		return nil, fmt.Errorf("refreshing the login: %w", err)
	}
	if t.RefreshToken == "" {
		t.RefreshToken = refreshToken
	}
	return t, nil
}

// Revoke revokes refreshToken at the provider's revocation_endpoint
// (RFC 7009, token_type_hint=refresh_token). It returns an error wrapping
// ErrNoRevocationEndpoint when the provider has none (see CanRevoke).
func (p *Provider) Revoke(ctx context.Context, refreshToken string) error {
	if !p.CanRevoke() {
		return fmt.Errorf("revoking the refresh token: %w (%s)", ErrNoRevocationEndpoint, p.meta.Issuer)
	}
	form := url.Values{
		"token":           {refreshToken},
		"token_type_hint": {"refresh_token"},
		"client_id":       {p.cfg.ClientID},
	}
	what := "revocation endpoint " + p.meta.RevocationURL
	status, ctype, body, err := post(ctx, p.hc, what, p.meta.RevocationURL, form)
	if err != nil {
		return fmt.Errorf("revoking the refresh token: %w", err)
	}
	if err := answerError(what, status, ctype, body); err != nil {
		return fmt.Errorf("revoking the refresh token: %w", err)
	}
	return nil
}
