package identity

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/crewgate/crewgate/internal/testidp"
)

// TestDeviceLoginAgainstRealIdP runs the whole flow against the embedded
// zitadel OpenID Provider: discovery, device authorization, the user's
// approval over HTTP, polling, ID-token verification, a narrowing refresh
// and revocation.
func TestDeviceLoginAgainstRealIdP(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	ctx := context.Background()
	start := time.Now()
	p, err := Discover(ctx, Config{Issuer: idp.Issuer, ClientID: testidp.ClientID,
		Scopes: []string{"openid", "profile", "email", "offline_access", "crew:read", "crew:write"}})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		t.Fatalf("StartDevice: %v", err)
	}
	if dc.Interval != time.Second || dc.VerificationURI != idp.Issuer+"device" || dc.VerificationURIComplete == "" {
		t.Errorf("device code = %v", dc)
	}
	if err := idp.Approve(dc.UserCode, "alice", "wrong"); err == nil {
		t.Error("Approve with a wrong password succeeded")
	}
	if err := idp.Approve(dc.UserCode, "alice", testidp.Password); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	tok, err := p.Poll(ctx, dc, PollOptions{})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	id, err := p.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	t.Logf("device login end to end: %v", time.Since(start).Round(time.Millisecond))

	if id.Subject != "alice" || id.Email != "alice@example.com" || id.Name != "Alice Example" ||
		!slices.Equal(id.Groups, []string{"ml-engineers", "crew-admins"}) || id.Issuer != idp.Issuer || id.ClientID != "crewgate" {
		t.Errorf("identity = %+v", id)
	}
	if !slices.Contains(id.Scopes, "crew:write") || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Errorf("tokens = %v", tok)
	}

	narrow, err := p.Refresh(ctx, tok.RefreshToken, []string{"crew:read"}, nil)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if !slices.Equal(narrow.Scopes, []string{"crew:read"}) || narrow.RefreshToken == tok.RefreshToken {
		t.Errorf("narrowed tokens = %v (want scope crew:read and a rotated refresh token)", narrow)
	}
	if _, err := p.Refresh(ctx, tok.RefreshToken, nil, nil); !errors.Is(err, ErrExpired) {
		t.Errorf("reusing a rotated refresh token: %v, want ErrExpired", err)
	}

	if !p.CanRevoke() {
		t.Fatal("the IdP lists no revocation endpoint")
	}
	if err := p.Revoke(ctx, narrow.RefreshToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := p.Refresh(ctx, narrow.RefreshToken, nil, nil); !errors.Is(err, ErrExpired) {
		t.Errorf("refresh after revocation: %v, want ErrExpired", err)
	}
}

func TestDeviceLoginDeniedAgainstRealIdP(t *testing.T) {
	idp := testidp.Start(t, testidp.WithInterval(time.Second))
	ctx := context.Background()
	p, err := Discover(ctx, Config{Issuer: idp.Issuer, ClientID: testidp.ClientID, Scopes: []string{"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := p.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // deny while Poll is waiting
		if err := idp.Deny(dc.UserCode, "bob", testidp.Password); err != nil {
			t.Errorf("Deny: %v", err)
		}
	}()
	if _, err := p.Poll(ctx, dc, PollOptions{}); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("Poll = %v, want ErrAccessDenied", err)
	}
}
