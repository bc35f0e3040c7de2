// Package testidp runs a real OpenID Provider (zitadel/oidc's example OP)
// on a loopback address, for crewgate's tests and for humans trying crewgate
// locally (see cmd/crewgate-devidp).
//
// It serves a public client "crewgate" with the device-code, refresh-token
// and token-exchange grants, and two users: alice/pw (groups ml-engineers and
// crew-admins, allowed to exchange tokens) and bob/pw (no groups). The user's
// side of the device flow can be completed over HTTP with Approve and Deny.
//
// It is a normal package so that the dev program can use it; only tests and
// that program import it.
package testidp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// ClientID is the public client the IdP registers.
const ClientID = "crewgate"

// Password is every user's password.
const Password = "pw"

// IdP is a running OpenID Provider.
type IdP struct {
	// Issuer is the issuer URL, with its trailing slash, exactly as the
	// discovery document says it.
	Issuer string

	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

type options struct {
	interval time.Duration
}

// Option configures the IdP.
type Option func(*options)

// WithInterval makes the device authorization response advertise d (whole
// seconds, at least 1) as the polling interval instead of the example OP's
// hard-coded 5 s, so tests finish quickly.
func WithInterval(d time.Duration) Option {
	return func(o *options) { o.interval = d }
}

// Start runs an IdP on 127.0.0.1 on a free port and stops it when t ends.
func Start(t testing.TB, opts ...Option) *IdP {
	t.Helper()
	idp, err := New("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("starting the test IdP: %v", err)
	}
	t.Cleanup(func() {
		if err := idp.Close(); err != nil {
			t.Errorf("stopping the test IdP: %v", err)
		}
	})
	return idp
}

// New listens on addr, which must be a loopback address (e.g. 127.0.0.1:0),
// and serves the IdP until Close.
func New(addr string, opts ...Option) (*IdP, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("address %q is not a loopback address: the test IdP has well-known passwords", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	issuer := "http://" + ln.Addr().String() + "/"

	// NewStorageWithClients takes our own client map, so the example
	// package's global RegisterClients map is never touched.
	st := &store{Storage: storage.NewStorageWithClients(users, map[string]*storage.Client{
		ClientID: storage.NativeClient(ClientID),
	})}
	// A nil logger keeps exampleop from replacing slog's default logger.
	var h http.Handler = exampleop.SetupServer(issuer, st, nil, false)
	if o.interval > 0 {
		h = rewriteInterval(h, o.interval)
	}
	idp := &IdP{
		Issuer: issuer,
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		ln:     ln,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(idp.done)
		idp.srv.Serve(ln)
	}()
	return idp, nil
}

// Close stops the server and waits for it.
func (i *IdP) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := i.srv.Shutdown(ctx)
	<-i.done
	return err
}

// Approve completes the user's side of a device login: it signs in as
// username and allows the device with userCode.
func (i *IdP) Approve(userCode, username, password string) error {
	return i.confirm(userCode, username, password, "allowed")
}

// Deny signs in as username and denies the device with userCode.
func (i *IdP) Deny(userCode, username, password string) error {
	return i.confirm(userCode, username, password, "denied")
}

func (i *IdP) confirm(userCode, username, password, action string) error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		// The example UI answers errors with a 303 back to its form,
		// carrying the message in ?prompt=; stop there and report it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.PostForm(i.Issuer+"device/login", url.Values{
		"user_code": {userCode}, "username": {username}, "password": {password},
	})
	if err != nil {
		return fmt.Errorf("device login: %w", err)
	}
	if err := pageError("device login", resp); err != nil {
		return err
	}
	resp, err = hc.Get(i.Issuer + "device/confirm?action=" + action)
	if err != nil {
		return fmt.Errorf("device confirm: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("device confirm: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Device authorization "+action) {
		return fmt.Errorf("device confirm: %s%s", resp.Status, redirectPrompt(resp))
	}
	return nil
}

func pageError(what string, resp *http.Response) error {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return fmt.Errorf("%s: %s%s", what, resp.Status, redirectPrompt(resp))
}

func redirectPrompt(resp *http.Response) string {
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("prompt") == "" {
		return ""
	}
	p, _ := url.QueryUnescape(loc.Query().Get("prompt"))
	return ": " + p
}

// rewriteInterval replaces the "interval" of device authorization answers.
func rewriteInterval(next http.Handler, d time.Duration) http.Handler {
	secs := max(int((d+time.Second-1)/time.Second), 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/device_authorization" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var m map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil {
			if _, ok := m["interval"]; ok {
				m["interval"] = secs
				if b, err := json.Marshal(m); err == nil {
					body = b
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		io.Copy(w, bytes.NewReader(body))
	})
}

// user is an example-storage user plus groups.
type user struct {
	storage.User
	Groups []string
}

var userList = []user{
	{User: storage.User{ID: "alice", Username: "alice", Password: Password, FirstName: "Alice", LastName: "Example",
		Email: "alice@example.com", EmailVerified: true, PreferredLanguage: language.English, IsAdmin: true},
		Groups: []string{"ml-engineers", "crew-admins"}},
	{User: storage.User{ID: "bob", Username: "bob", Password: Password, FirstName: "Bob", LastName: "Example",
		Email: "bob@example.com", EmailVerified: true, PreferredLanguage: language.English}},
}

// userStore implements storage.UserStore. The device login sets the subject
// to the username, so each user's ID equals its Username.
type userStore map[string]*user

var users = func() userStore {
	m := userStore{}
	for i := range userList {
		m[userList[i].Username] = &userList[i]
	}
	return m
}()

func (u userStore) GetUserByID(id string) *storage.User {
	if x := u[id]; x != nil {
		cp := x.User
		return &cp
	}
	return nil
}

func (u userStore) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }
func (userStore) ExampleClientID() string                       { return "service" }

func (u userStore) groups(id string) []string {
	if x := u[id]; x != nil {
		return append([]string{}, x.Groups...)
	}
	return nil
}

// client is the example native client with crewgate's grants. It asserts
// the profile and email claims in the ID token, which the example client
// leaves to the userinfo endpoint.
type client struct{ op.Client }

func (client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeDeviceCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeTokenExchange}
}
func (client) IDTokenUserinfoClaimsAssertion() bool { return true }

// store wraps the example storage: it adds the groups claim and fixes what
// the example gets wrong for crewgate's flows.
type store struct {
	*storage.Storage
	// device serialises access to device authorization states: the example
	// storage hands out pointers that the OP reads after the storage lock is
	// released while Approve writes them, a data race under -race.
	device sync.Mutex
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err == nil && id == ClientID {
		return client{c}, nil
	}
	return c, err
}

// TokenRequestByRefreshToken hands the OP a copy of the stored refresh
// token: the example's SetCurrentScopes mutates it, so one narrowed refresh
// would otherwise narrow the grant for good.
func (s *store) TokenRequestByRefreshToken(ctx context.Context, rt string) (op.RefreshTokenRequest, error) {
	r, err := s.Storage.TokenRequestByRefreshToken(ctx, rt)
	if err != nil {
		return nil, err
	}
	cp := *r.(*storage.RefreshTokenRequest).RefreshToken
	cp.Scopes = append([]string(nil), cp.Scopes...)
	return &storage.RefreshTokenRequest{RefreshToken: &cp}, nil
}

// CreateAccessToken and CreateAccessAndRefreshTokens give device-flow
// tokens their client ID: the example storage records it only for the code
// flow, so revoking a device-flow token failed with "token was not issued for
// this client" and refreshing it with invalid_grant.
func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	return s.Storage.CreateAccessToken(ctx, withClientID(req))
}

func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	return s.Storage.CreateAccessAndRefreshTokens(ctx, withClientID(req), currentRefreshToken)
}

// withClientID turns a device authorization into the storage's own request
// type, which carries the client ID.
func withClientID(req op.TokenRequest) op.TokenRequest {
	st, ok := req.(*op.DeviceAuthorizationState)
	if !ok {
		return req
	}
	return &storage.RefreshTokenRequest{RefreshToken: &storage.RefreshToken{
		ApplicationID: st.ClientID, UserID: st.Subject, Audience: st.GetAudience(),
		Scopes: st.Scopes, AuthTime: st.AuthTime, AMR: st.AMR,
	}}
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	s.addGroups(ui, req.GetSubject())
	return nil
}

func (s *store) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(ui, ui.Subject)
	return nil
}

func (s *store) SetUserinfoFromTokenExchangeRequest(ctx context.Context, ui *oidc.UserInfo, req op.TokenExchangeRequest) error {
	if err := s.Storage.SetUserinfoFromTokenExchangeRequest(ctx, ui, req); err != nil {
		return err
	}
	s.addGroups(ui, req.GetSubject())
	return nil
}

func (s *store) addGroups(ui *oidc.UserInfo, subject string) {
	if g := users.groups(subject); g != nil {
		ui.AppendClaims("groups", g)
	}
}

func copyState(st *op.DeviceAuthorizationState) *op.DeviceAuthorizationState {
	cp := *st
	cp.Audience = append([]string(nil), st.Audience...)
	cp.Scopes = append([]string(nil), st.Scopes...)
	cp.AMR = append([]string(nil), st.AMR...)
	return &cp
}

func (s *store) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.device.Lock()
	defer s.device.Unlock()
	st, err := s.Storage.GetDeviceAuthorizatonState(ctx, clientID, deviceCode)
	if err != nil {
		return nil, err
	}
	return copyState(st), nil
}

func (s *store) GetDeviceAuthorizationByUserCode(ctx context.Context, userCode string) (*op.DeviceAuthorizationState, error) {
	s.device.Lock()
	defer s.device.Unlock()
	st, err := s.Storage.GetDeviceAuthorizationByUserCode(ctx, userCode)
	if err != nil {
		return nil, err
	}
	return copyState(st), nil
}

func (s *store) CompleteDeviceAuthorization(ctx context.Context, userCode, subject string) error {
	s.device.Lock()
	defer s.device.Unlock()
	return s.Storage.CompleteDeviceAuthorization(ctx, userCode, subject)
}

// DenyDeviceAuthorization also avoids the example's nil dereference on an
// unknown user code.
func (s *store) DenyDeviceAuthorization(ctx context.Context, userCode string) error {
	s.device.Lock()
	defer s.device.Unlock()
	if _, err := s.Storage.GetDeviceAuthorizationByUserCode(ctx, userCode); err != nil {
		return err
	}
	return s.Storage.DenyDeviceAuthorization(ctx, userCode)
}

var _ exampleop.Storage = (*store)(nil)
