package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fakeIdP is a small scripted provider for the error paths a real IdP will
// not produce on demand. Its token endpoint answers from a script.
type fakeIdP struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey // published in the JWKS

	mu          sync.Mutex
	meta        map[string]any                          // discovery document (issuer and endpoints filled in)
	device      map[string]any                          // device authorization answer
	token       func(n int, form url.Values) (int, any) // n counts token requests from 1
	revoke      func(form url.Values) (int, any)        // nil -> 200 {}
	deviceForms []url.Values
	tokenForms  []url.Values
	tokenTimes  []time.Time
	revokeForms []url.Values
}

const fakeDeviceCode = "dc-SECRET-device-code-4711"

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIdP{t: t, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, f.meta)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.deviceForms = append(f.deviceForms, r.PostForm)
		writeJSON(w, 200, f.device)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		f.tokenForms = append(f.tokenForms, r.PostForm)
		f.tokenTimes = append(f.tokenTimes, time.Now())
		n, script := len(f.tokenForms), f.token
		f.mu.Unlock()
		status, body := script(n, r.PostForm)
		writeJSON(w, status, body)
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		f.revokeForms = append(f.revokeForms, r.PostForm)
		script := f.revoke
		f.mu.Unlock()
		if script == nil {
			w.WriteHeader(200)
			return
		}
		status, body := script(r.PostForm)
		writeJSON(w, status, body)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	base := f.srv.URL
	f.meta = map[string]any{
		"issuer":                                base + "/",
		"token_endpoint":                        base + "/token",
		"device_authorization_endpoint":         base + "/device",
		"jwks_uri":                              base + "/jwks",
		"revocation_endpoint":                   base + "/revoke",
		"id_token_signing_alg_values_supported": []string{"RS256"},
	}
	f.device = map[string]any{
		"device_code": fakeDeviceCode, "user_code": "ABCD-EFGH",
		"verification_uri": base + "/activate", "expires_in": 300,
	}
	f.token = func(int, url.Values) (int, any) { return 400, oauthErr("authorization_pending") }
	return f
}

func (f *fakeIdP) issuer() string { return f.srv.URL + "/" }

func (f *fakeIdP) config() Config {
	return Config{Issuer: f.issuer(), ClientID: "crewgate", Scopes: []string{"openid", "email"}}
}

// idToken signs claims (iss, aud, sub, exp filled in unless set) with key.
func (f *fakeIdP) idToken(key *rsa.PrivateKey, claims map[string]any) string {
	f.t.Helper()
	c := map[string]any{
		"iss": f.issuer(), "aud": "crewgate", "sub": "alice",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	for k, v := range claims {
		c[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	jws, err := signer.Sign(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fakeIdP) forms() (device, token []url.Values, times []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.deviceForms...), append([]url.Values(nil), f.tokenForms...), append([]time.Time(nil), f.tokenTimes...)
}

func oauthErr(code string) map[string]string {
	return map[string]string{"error": code, "error_description": "scripted " + code}
}

func success(idToken string) map[string]any {
	return map[string]any{
		"access_token": "at-SECRET-access", "refresh_token": "rt-SECRET-refresh", "id_token": idToken,
		"token_type": "Bearer", "expires_in": 300, "scope": "openid email",
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
