package identity

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/testidp"
)

// basicAuthSpy records the Authorization header and form of token requests.
type basicAuthSpy struct {
	user, pass string
	ok         bool
	grant      string
}

func (s *basicAuthSpy) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/token") {
		s.user, s.pass, s.ok = r.BasicAuth()
		body, _ := r.GetBody()
		buf := new(strings.Builder)
		if body != nil {
			_, _ = io.Copy(buf, body)
		}
		s.grant = buf.String()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func loginAt(t *testing.T, idp *testidp.IdP, user string, hc *http.Client) (*Provider, *Tokens) {
	t.Helper()
	ctx := context.Background()
	p, err := Discover(ctx, Config{Issuer: idp.Issuer, ClientID: testidp.ClientID, HTTPClient: hc,
		Scopes: []string{"openid", "offline_access", "crew:read", "crew:write"}})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		t.Fatalf("StartDevice: %v", err)
	}
	if err := idp.Approve(dc.UserCode, user, testidp.Password); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	tok, err := p.Poll(ctx, dc, PollOptions{})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	return p, tok
}

// TestExchangeAgainstRealIdP trades alice's access token for one narrowed to
// crew:read and an audience, with the client's Basic credentials.
func TestExchangeAgainstRealIdP(t *testing.T) {
	t.Parallel()
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	spy := &basicAuthSpy{}
	p, tok := loginAt(t, idp, "alice", &http.Client{Transport: spy, Timeout: 10 * time.Second})

	got, err := p.Exchange(context.Background(), tok.AccessToken, []string{"crew:read"}, "https://crewai.internal")
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if !spy.ok || spy.user != testidp.ClientID || spy.pass != "" {
		t.Errorf("Basic auth = %q:%q (sent %v), want %s with an empty secret", spy.user, spy.pass, spy.ok, testidp.ClientID)
	}
	for _, want := range []string{"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
		"scope=crew%3Aread", "audience=https%3A%2F%2Fcrewai.internal", "requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"} {
		if !strings.Contains(spy.grant, want) {
			t.Errorf("exchange form lacks %s", want)
		}
	}
	if got.AccessToken == "" || got.AccessToken == tok.AccessToken {
		t.Errorf("exchanged access token is empty or the subject token itself")
	}
	if !slices.Equal(got.Scopes, []string{"crew:read"}) {
		t.Errorf("exchanged scopes = %q, want [crew:read]", got.Scopes)
	}
	if got.Expiry.IsZero() || time.Until(got.Expiry) <= 0 {
		t.Errorf("exchanged expiry = %v", got.Expiry)
	}
}

// TestExchangeRefusedAgainstRealIdP: bob may not exchange, and a made-up
// subject token is refused; both come back as *OAuthError without tokens.
func TestExchangeRefusedAgainstRealIdP(t *testing.T) {
	t.Parallel()
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	p, tok := loginAt(t, idp, "bob", nil)

	_, err := p.Exchange(context.Background(), tok.AccessToken, []string{"crew:read"}, "")
	var oe *OAuthError
	if !errors.As(err, &oe) {
		t.Fatalf("Exchange as bob = %v, want an *OAuthError", err)
	}
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows a token: %v", err)
		}
	}

	bogus := "not-a-real-token-" + strings.Repeat("x", 20)
	_, err = p.Exchange(context.Background(), bogus, nil, "")
	if !errors.As(err, &oe) || strings.Contains(err.Error(), bogus) {
		t.Errorf("Exchange with a bogus subject = %v, want an *OAuthError that does not repeat it", err)
	}
	if _, err := p.Exchange(context.Background(), "", nil, ""); err == nil {
		t.Error("Exchange without a subject token succeeded")
	}
}
