package testidp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/identity"
	"github.com/crewgate/crewgate/internal/testidp"
)

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryAndInterval(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	if !strings.HasPrefix(idp.Issuer, "http://127.0.0.1:") || !strings.HasSuffix(idp.Issuer, "/") {
		t.Errorf("Issuer = %q", idp.Issuer)
	}
	var meta map[string]any
	getJSON(t, idp.Issuer+".well-known/openid-configuration", &meta)
	if meta["issuer"] != idp.Issuer || meta["device_authorization_endpoint"] == nil || meta["revocation_endpoint"] == nil {
		t.Errorf("discovery = %v", meta)
	}
	resp, err := http.PostForm(meta["device_authorization_endpoint"].(string), url.Values{"client_id": {testidp.ClientID}, "scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var da map[string]any
	json.NewDecoder(resp.Body).Decode(&da)
	if da["interval"] != float64(1) || da["user_code"] == nil {
		t.Errorf("device authorization = %v, want interval 1", da)
	}

	plain := testidp.Start(t)
	resp, err = http.PostForm(plain.Issuer+"device_authorization", url.Values{"client_id": {testidp.ClientID}, "scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	da = nil
	json.NewDecoder(resp.Body).Decode(&da)
	if da["interval"] != float64(5) {
		t.Errorf("without WithInterval: interval = %v, want the OP's 5", da["interval"])
	}
}

func TestNewRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0"} {
		if idp, err := testidp.New(addr); err == nil {
			idp.Close()
			t.Errorf("New(%q) succeeded", addr)
		}
	}
}

func TestApproveAndDenyErrors(t *testing.T) {
	idp := testidp.Start(t)
	if err := idp.Approve("NOPE-NOPE", "alice", testidp.Password); err == nil {
		t.Error("Approve of an unknown user code succeeded")
	}
	if err := idp.Deny("NOPE-NOPE", "alice", testidp.Password); err == nil {
		t.Error("Deny of an unknown user code succeeded")
	}
}

// login signs username in through the device flow and returns the tokens.
func login(t *testing.T, idp *testidp.IdP, username string, scopes ...string) (*identity.Provider, *identity.Tokens) {
	t.Helper()
	ctx := context.Background()
	p, err := identity.Discover(ctx, identity.Config{Issuer: idp.Issuer, ClientID: testidp.ClientID, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Approve(dc.UserCode, username, testidp.Password); err != nil {
		t.Fatal(err)
	}
	tok, err := p.Poll(ctx, dc, identity.PollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, tok
}

func TestUsersAndClaims(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	p, tok := login(t, idp, "bob", "openid", "profile", "email")
	id, err := p.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "bob" || id.Email != "bob@example.com" || id.Name != "Bob Example" || len(id.Groups) != 0 {
		t.Errorf("bob = %+v", id)
	}

	// The userinfo endpoint carries the groups too.
	_, tok = login(t, idp, "alice", "openid", "profile")
	req, _ := http.NewRequest("GET", idp.Issuer+"userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ui struct {
		Sub    string   `json:"sub"`
		Groups []string `json:"groups"`
	}
	json.NewDecoder(resp.Body).Decode(&ui)
	if ui.Sub != "alice" || !slices.Equal(ui.Groups, []string{"ml-engineers", "crew-admins"}) {
		t.Errorf("userinfo = %+v (status %s)", ui, resp.Status)
	}
}

func TestTokenExchange(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	_, tok := login(t, idp, "alice", "openid", "crew:read", "crew:write")
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {tok.AccessToken},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":                {"crew:read"},
		"audience":             {"https://crewai.internal"},
	}
	req, _ := http.NewRequest("POST", idp.Issuer+"oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testidp.ClientID, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	json.Unmarshal(body, &out)
	if resp.StatusCode != 200 || out.AccessToken == "" || out.Scope != "crew:read" {
		t.Errorf("token exchange: %s scope %q", resp.Status, out.Scope)
	}
}
