package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// RFC 8693 names.
const (
	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// Exchange trades subjectToken, an access token of the login, for a new
// access token narrowed to scopes and, when audience is set, to that
// audience (RFC 8693 token exchange). audience is sent as RFC 8693's own
// "audience" parameter, whatever Config.AudienceParam says, because that is
// the name token-exchange implementations read.
//
// The client authenticates with HTTP Basic auth, client ID and an empty
// secret (RFC 6749 §2.3.1): token-exchange endpoints such as zitadel's read
// the client only from there, even for a public client.
//
// A refusal is an *OAuthError (for example invalid_grant when the subject
// token is no longer valid, or unauthorized_client); no error holds a token.
// The returned Tokens carry no refresh token unless the provider sent one.
func (p *Provider) Exchange(ctx context.Context, subjectToken string, scopes []string, audience string) (*Tokens, error) {
	if subjectToken == "" {
		return nil, errors.New("exchanging the access token: no subject token")
	}
	form := url.Values{
		"grant_type":           {grantTypeTokenExchange},
		"subject_token":        {subjectToken},
		"subject_token_type":   {tokenTypeAccessToken},
		"requested_token_type": {tokenTypeAccessToken},
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	what := "token endpoint " + p.meta.TokenURL
	status, ctype, body, err := p.postClientAuth(ctx, what, form)
	if err != nil {
		return nil, fmt.Errorf("exchanging the access token: %w", err)
	}
	if err := answerError(what, status, ctype, body); err != nil {
		return nil, fmt.Errorf("exchanging the access token: %w", err)
	}
	var tr tokenResponse
	if err := decodeTokenResponse(ctype, body, &tr); err != nil {
		return nil, fmt.Errorf("exchanging the access token: %s: the answer is not valid JSON (Content-Type %q)", what, ctype)
	}
	var issued struct {
		Type string `json:"issued_token_type"`
	}
	_ = json.Unmarshal(body, &issued) // absent or form-encoded: checked below only when present
	switch issued.Type {
	case "", tokenTypeAccessToken, tokenTypeJWT:
	default:
		// Injecting, say, a refresh token as a bearer credential would hand a
		// long-lived secret to an upstream.
		return nil, fmt.Errorf("exchanging the access token: %s issued a %q token, not an access token", what, issued.Type)
	}
	t, err := tr.tokens(scopes)
	if err != nil {
		return nil, fmt.Errorf("exchanging the access token: %w", err)
	}
	return t, nil
}

// postClientAuth is post with the client's Basic credentials. The header is
// set on this request only, so a redirect to another host does not carry it.
func (p *Provider) postClientAuth(ctx context.Context, what string, form url.Values) (int, string, []byte, error) {
	req, err := formRequest(ctx, what, p.meta.TokenURL, form)
	if err != nil {
		return 0, "", nil, err
	}
	req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), "")
	return send(p.hc, what, req)
}
