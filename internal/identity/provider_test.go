package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const fastUnit = 20 * time.Millisecond

func discover(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := Discover(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return p
}

// login runs StartDevice and Poll against f with fast timing.
func login(t *testing.T, f *fakeIdP, opts PollOptions) (*Provider, *Tokens, error) {
	t.Helper()
	p := discover(t, f.config())
	dc, err := p.StartDevice(context.Background())
	if err != nil {
		t.Fatalf("StartDevice: %v", err)
	}
	if opts.MinInterval == 0 {
		opts.MinInterval = fastUnit
	}
	tok, err := p.Poll(context.Background(), dc, opts)
	return p, tok, err
}

// noSecrets fails when s contains any of the fake's secrets.
func noSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{"SECRET", fakeDeviceCode} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows a secret: %s", what, s)
		}
	}
}

func TestPollSlowDownGrowsIntervalAndSucceeds(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(n int, _ url.Values) (int, any) {
		switch n {
		case 1, 2:
			return 400, oauthErr("slow_down")
		case 3:
			return 400, oauthErr("authorization_pending")
		}
		return 200, success(f.idToken(f.key, nil))
	}
	var waits []time.Duration
	_, tok, err := login(t, f, PollOptions{OnWait: func(d time.Duration) { waits = append(waits, d) }})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if tok.AccessToken != "at-SECRET-access" || tok.RefreshToken != "rt-SECRET-refresh" {
		t.Errorf("tokens not returned: %v", tok)
	}
	// 1.2 x 20ms, then (20+20)x1.4, (40+20)x1.4, 60x1.4.
	want := []time.Duration{24 * time.Millisecond, 56 * time.Millisecond, 84 * time.Millisecond, 84 * time.Millisecond}
	if !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	_, _, times := f.forms()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < want[i] {
			t.Errorf("poll %d came %v after the previous one, want >= %v", i+1, gap, want[i])
		}
	}
}

func TestPollServerIntervalTimesSafetyFactor(t *testing.T) {
	f := newFakeIdP(t)
	f.device["interval"] = 7
	var got time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	p := discover(t, f.config())
	dc, err := p.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dc.Interval != 7*time.Second {
		t.Errorf("Interval = %v, want 7s", dc.Interval)
	}
	_, err = p.Poll(ctx, dc, PollOptions{MinInterval: fastUnit, OnWait: func(d time.Duration) { got = d; cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if want := 8400 * time.Millisecond; got != want {
		t.Errorf("first wait = %v, want %v (7s x 1.2; MinInterval must not override a server interval)", got, want)
	}
}

func TestPollDefaultIntervalIsFiveSeconds(t *testing.T) {
	f := newFakeIdP(t)
	p := discover(t, f.config())
	dc, err := p.StartDevice(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dc.Interval != 5*time.Second {
		t.Errorf("Interval = %v, want 5s when the server sends none", dc.Interval)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got time.Duration
	p.Poll(ctx, dc, PollOptions{OnWait: func(d time.Duration) { got = d; cancel() }})
	if got != 6*time.Second {
		t.Errorf("first wait = %v, want 6s", got)
	}
}

func TestPollOutcomes(t *testing.T) {
	for _, tc := range []struct {
		code    string
		wantIs  error
		wantMsg string
	}{
		{"access_denied", ErrAccessDenied, "denied"},
		{"authorization_declined", ErrAccessDenied, "denied"},
		{"expired_token", ErrExpired, "expired"},
		{"invalid_client", nil, "invalid_client: scripted invalid_client"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f := newFakeIdP(t)
			f.token = func(n int, _ url.Values) (int, any) {
				if n == 1 {
					return 400, oauthErr("authorization_pending")
				}
				return 400, oauthErr(tc.code)
			}
			_, tok, err := login(t, f, PollOptions{})
			if err == nil || tok != nil {
				t.Fatalf("Poll = %v, %v; want an error", tok, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.wantIs)
			}
			if tc.wantIs == nil {
				var oe *OAuthError
				if !errors.As(err, &oe) || oe.Code != tc.code {
					t.Errorf("err = %v, want *OAuthError %s", err, tc.code)
				}
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to say %q", err, tc.wantMsg)
			}
			noSecrets(t, "error", err.Error())
		})
	}
}

func TestPollLocalExpiry(t *testing.T) {
	f := newFakeIdP(t)
	f.device["expires_in"] = 1 // the token endpoint says authorization_pending forever
	start := time.Now()
	_, _, err := login(t, f, PollOptions{MinInterval: 100 * time.Millisecond})
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
	if el := time.Since(start); el < 900*time.Millisecond || el > 3*time.Second {
		t.Errorf("expired after %v, want about 1s", el)
	}
}

func TestPollRetriesServerErrors(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(n int, _ url.Values) (int, any) {
		if n <= 2 {
			return 503, map[string]string{"message": "busy"}
		}
		return 200, success(f.idToken(f.key, nil))
	}
	if _, _, err := login(t, f, PollOptions{}); err != nil {
		t.Fatalf("Poll after two 503s: %v", err)
	}

	f2 := newFakeIdP(t)
	f2.token = func(int, url.Values) (int, any) { return 502, "bad gateway" }
	_, _, err := login(t, f2, PollOptions{})
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "4 times") {
		t.Fatalf("err = %v, want a 502 failure after 4 tries", err)
	}
	if _, tf, _ := f2.forms(); len(tf) != 4 {
		t.Errorf("%d polls, want 4", len(tf))
	}
}

func TestPollNetworkFailureSaysWhatFailed(t *testing.T) {
	f := newFakeIdP(t)
	p := discover(t, f.config())
	dc, err := p.StartDevice(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Close()
	_, err = p.Poll(context.Background(), dc, PollOptions{MinInterval: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "token endpoint "+f.srv.URL+"/token") {
		t.Fatalf("err = %v, want it to name the token endpoint", err)
	}
	noSecrets(t, "error", err.Error())
}

func TestPollCancelIsPrompt(t *testing.T) {
	f := newFakeIdP(t)
	f.device["interval"] = 5
	p := discover(t, f.config())
	dc, err := p.StartDevice(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = p.Poll(ctx, dc, PollOptions{})
	if err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled itself", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Poll returned %v after cancel, want promptly", el)
	}
}

func TestResourcesAndScopesAreSent(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(int, url.Values) (int, any) { return 200, success(f.idToken(f.key, nil)) }
	cfg := f.config()
	cfg.Resources = []string{"https://a.example", "https://b.example"}
	cfg.AudienceParam = "audience"
	p := discover(t, cfg)
	dc, err := p.StartDevice(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Poll(context.Background(), dc, PollOptions{MinInterval: fastUnit}); err != nil {
		t.Fatal(err)
	}
	df, tf, _ := f.forms()
	if got := df[0]["audience"]; !slices.Equal(got, cfg.Resources) {
		t.Errorf("device authorization audience = %v", got)
	}
	if got := df[0].Get("scope"); got != "openid email" {
		t.Errorf("scope = %q", got)
	}
	if got := df[0].Get("client_id"); got != "crewgate" {
		t.Errorf("client_id = %q", got)
	}
	want := url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {fakeDeviceCode}, "client_id": {"crewgate"},
		"audience": cfg.Resources,
	}
	if fmt.Sprint(tf[0]) != fmt.Sprint(want) {
		t.Errorf("token form = %v, want %v", tf[0], want)
	}
}

func TestDiscoverErrors(t *testing.T) {
	t.Run("no device endpoint", func(t *testing.T) {
		f := newFakeIdP(t)
		delete(f.meta, "device_authorization_endpoint")
		_, err := Discover(context.Background(), f.config())
		if !errors.Is(err, ErrNoDeviceEndpoint) {
			t.Fatalf("err = %v, want ErrNoDeviceEndpoint", err)
		}
		if !strings.Contains(err.Error(), f.issuer()) || !strings.Contains(err.Error(), "device_authorization_endpoint") {
			t.Errorf("err = %q, want it to name the issuer and the missing endpoint", err)
		}
	})
	t.Run("http non-loopback issuer", func(t *testing.T) {
		for _, iss := range []string{"http://idp.example.com/", "http://10.0.0.1/", "ftp://idp.example.com/"} {
			_, err := Discover(context.Background(), Config{Issuer: iss, ClientID: "crewgate"})
			if err == nil || !strings.Contains(err.Error(), "https://") {
				t.Errorf("%s: err = %v, want a plain-http refusal", iss, err)
			}
		}
	})
	t.Run("trailing slash mismatch", func(t *testing.T) {
		f := newFakeIdP(t)
		cfg := f.config()
		cfg.Issuer = f.srv.URL // discovery says URL + "/"
		_, err := Discover(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "trailing slash") {
			t.Fatalf("err = %v, want an issuer mismatch", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		f := newFakeIdP(t)
		f.srv.Close()
		_, err := Discover(context.Background(), f.config())
		want := "fetching " + f.srv.URL + "/.well-known/openid-configuration: "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("err = %v, want prefix %q", err, want)
		}
	})
	t.Run("not found", func(t *testing.T) {
		f := newFakeIdP(t)
		cfg := f.config()
		cfg.Issuer = f.srv.URL + "/nope/"
		_, err := Discover(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("err = %v, want 404", err)
		}
	})
	t.Run("plain http endpoint in an https document", func(t *testing.T) {
		f := newFakeIdP(t)
		f.meta["token_endpoint"] = "http://evil.example/token"
		_, err := Discover(context.Background(), f.config())
		if err == nil || !strings.Contains(err.Error(), "token_endpoint") {
			t.Fatalf("err = %v, want a refusal of the http endpoint", err)
		}
	})
}

func TestVerify(t *testing.T) {
	f := newFakeIdP(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     *rsa.PrivateKey
		claims  map[string]any
		cfg     func(*Config)
		wantErr string
		check   func(*testing.T, *Identity)
	}{
		{name: "groups list", claims: map[string]any{"groups": []string{"a", "b"}, "email": "alice@example.com", "name": "Alice", "nonce": "n", "at_hash": "h"},
			check: func(t *testing.T, id *Identity) {
				if !slices.Equal(id.Groups, []string{"a", "b"}) || id.Email != "alice@example.com" || id.Name != "Alice" || id.Subject != "alice" {
					t.Errorf("identity = %+v", id)
				}
				if _, ok := id.Claims["nonce"]; ok {
					t.Error("nonce kept in claims")
				}
				if _, ok := id.Claims["at_hash"]; ok {
					t.Error("at_hash kept in claims")
				}
				if id.Claims["email"] != "alice@example.com" {
					t.Errorf("claims = %v", id.Claims)
				}
			}},
		{name: "groups string in custom claim", claims: map[string]any{"roles": "admins"}, cfg: func(c *Config) { c.GroupsClaim = "roles" },
			check: func(t *testing.T, id *Identity) {
				if !slices.Equal(id.Groups, []string{"admins"}) {
					t.Errorf("groups = %v", id.Groups)
				}
			}},
		{name: "no groups", check: func(t *testing.T, id *Identity) {
			if id.Groups == nil || len(id.Groups) != 0 {
				t.Errorf("groups = %#v, want empty non-nil", id.Groups)
			}
		}},
		{name: "groups wrong type", claims: map[string]any{"groups": 42}, wantErr: `claim "groups"`},
		{name: "bad signature", key: other, wantErr: "signature"},
		{name: "wrong audience", claims: map[string]any{"aud": "someone-else"}, wantErr: "audience"},
		{name: "wrong issuer", claims: map[string]any{"iss": "https://evil.example/"}, wantErr: "different provider"},
		{name: "expired", claims: map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, wantErr: "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			p := discover(t, cfg)
			key := tc.key
			if key == nil {
				key = f.key
			}
			raw := f.idToken(key, tc.claims)
			id, err := p.Verify(context.Background(), &Tokens{IDToken: raw, AccessToken: "at-SECRET", Scopes: []string{"openid"}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), raw) {
					t.Errorf("error contains the ID token")
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Issuer != f.issuer() || id.ClientID != "crewgate" || id.Expiry.IsZero() || id.LoggedInAt.IsZero() {
				t.Errorf("identity = %+v", id)
			}
			tc.check(t, id)
		})
	}
	t.Run("no id token", func(t *testing.T) {
		p := discover(t, f.config())
		if _, err := p.Verify(context.Background(), &Tokens{AccessToken: "x"}); err == nil || !strings.Contains(err.Error(), "openid") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestRevokeSendsForm(t *testing.T) {
	f := newFakeIdP(t)
	p := discover(t, f.config())
	if !p.CanRevoke() {
		t.Fatal("CanRevoke = false")
	}
	if err := p.Revoke(context.Background(), "rt-SECRET-refresh"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want := url.Values{"token": {"rt-SECRET-refresh"}, "token_type_hint": {"refresh_token"}, "client_id": {"crewgate"}}
	if len(f.revokeForms) != 1 || fmt.Sprint(f.revokeForms[0]) != fmt.Sprint(want) {
		t.Errorf("revocation forms = %v, want [%v]", f.revokeForms, want)
	}

	f.revoke = func(url.Values) (int, any) { return 400, oauthErr("unsupported_token_type") }
	err := p.Revoke(context.Background(), "rt-SECRET-refresh")
	if err == nil || !strings.Contains(err.Error(), "unsupported_token_type") {
		t.Errorf("err = %v", err)
	} else {
		noSecrets(t, "error", err.Error())
	}

	delete(f.meta, "revocation_endpoint")
	p = discover(t, f.config())
	if p.CanRevoke() {
		t.Error("CanRevoke = true without an endpoint")
	}
	if err := p.Revoke(context.Background(), "x"); !errors.Is(err, ErrNoRevocationEndpoint) {
		t.Errorf("err = %v, want ErrNoRevocationEndpoint", err)
	}
}

func TestRefresh(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(n int, form url.Values) (int, any) {
		if form.Get("refresh_token") == "rt-SECRET-revoked" {
			return 400, oauthErr("invalid_grant")
		}
		return 200, map[string]any{"access_token": "at-SECRET-narrow", "token_type": "Bearer", "expires_in": 60}
	}
	p := discover(t, f.config())
	tok, err := p.Refresh(context.Background(), "rt-SECRET-old", []string{"crew:read"}, []string{"https://api.example"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "rt-SECRET-old" || !slices.Equal(tok.Scopes, []string{"crew:read"}) || time.Until(tok.Expiry) > time.Minute {
		t.Errorf("tokens = %v", tok)
	}
	_, tf, _ := f.forms()
	want := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-SECRET-old"}, "client_id": {"crewgate"},
		"scope": {"crew:read"}, "resource": {"https://api.example"}}
	if fmt.Sprint(tf[0]) != fmt.Sprint(want) {
		t.Errorf("form = %v, want %v", tf[0], want)
	}
	_, err = p.Refresh(context.Background(), "rt-SECRET-revoked", nil, nil)
	var oe *OAuthError
	if !errors.Is(err, ErrExpired) || !errors.As(err, &oe) {
		t.Errorf("err = %v, want ErrExpired and *OAuthError", err)
	}
	noSecrets(t, "error", fmt.Sprint(err))
}

func TestTokensNeverPrintSecrets(t *testing.T) {
	tok := Tokens{AccessToken: "at-SECRET-1", RefreshToken: "rt-SECRET-2", IDToken: "id-SECRET-3",
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Scopes: []string{"openid"}}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%T %v", "%10.3v"} {
		outs = append(outs, fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &tok))
	}
	outs = append(outs, tok.String(), tok.GoString(), fmt.Sprint(tok), fmt.Sprintln(&tok),
		fmt.Sprintf("%v", []Tokens{tok}), fmt.Sprintf("%+v", struct{ T *Tokens }{&tok}),
		fmt.Sprintf("%v", map[string]Tokens{"k": tok}), fmt.Errorf("wrapped: %v", tok).Error())
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("tokens", "t", tok, "p", &tok)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("tokens", "t", tok)
	outs = append(outs, buf.String())
	b, err := json.Marshal(map[string]any{"t": tok, "p": &tok})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(b))
	for _, o := range outs {
		noSecrets(t, "output", o)
	}
	if s := fmt.Sprintf("%v", tok); !strings.Contains(s, "[redacted]") || !strings.Contains(s, "2030-01-02") {
		t.Errorf("String = %q, want redacted secrets and the expiry", s)
	}
	if !strings.Contains(buf.String(), `"refresh_token":true`) {
		t.Errorf("slog output lacks the presence flags: %s", buf.String())
	}

	dc := DeviceCode{UserCode: "ABCD", deviceCode: fakeDeviceCode}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		noSecrets(t, "DeviceCode", fmt.Sprintf(verb, dc)+fmt.Sprintf(verb, &dc))
	}
}

// checks that the status-error path is typed, for callers and for retry.
func TestAnswerError(t *testing.T) {
	err := answerError("x", http.StatusTeapot, "text/html", []byte("<html>SECRET</html>"))
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "418") {
		t.Errorf("err = %v", err)
	}
	if retryable(err) {
		t.Error("418 is retryable")
	}
	if !retryable(answerError("x", 503, "", nil)) {
		t.Error("503 not retryable")
	}
}
