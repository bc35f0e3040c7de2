package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Config says which provider and client to use and what to ask for.
type Config struct {
	Issuer        string
	ClientID      string
	Scopes        []string     // asked for at login
	Resources     []string     // RFC 8707 resource values (upstream audiences), sent at device authorization and token requests
	AudienceParam string       // "" -> "resource"; "audience" for providers that want that name
	GroupsClaim   string       // "" -> "groups"
	HTTPClient    *http.Client // nil -> a client with sane timeouts
}

// Provider is a discovered OpenID Provider, ready for the device flow.
type Provider struct {
	cfg        Config
	hc         *http.Client
	oidc       *oidc.Provider
	meta       discovery
	pollUnit   time.Duration // RFC 8628's 5 s: default interval and slow_down step
	retryPause time.Duration // first back-off after a failed poll request
}

// discovery holds the metadata fields crewgate reads.
type discovery struct {
	Issuer        string   `json:"issuer"`
	TokenURL      string   `json:"token_endpoint"`
	DeviceAuthURL string   `json:"device_authorization_endpoint"`
	JWKSURL       string   `json:"jwks_uri"`
	UserInfoURL   string   `json:"userinfo_endpoint"`
	RevocationURL string   `json:"revocation_endpoint"`
	Algorithms    []string `json:"id_token_signing_alg_values_supported"`
}

// supportedAlgs are the asymmetric algorithms go-oidc verifies; anything else
// a provider advertises (HS256, none) is dropped.
var supportedAlgs = map[string]bool{
	oidc.RS256: true, oidc.RS384: true, oidc.RS512: true,
	oidc.ES256: true, oidc.ES384: true, oidc.ES512: true,
	oidc.PS256: true, oidc.PS384: true, oidc.PS512: true, oidc.EdDSA: true,
}

// DefaultHTTPClient returns the client Discover uses when Config.HTTPClient is nil.
func DefaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 20 * time.Second
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Discover fetches the provider's discovery document and checks it: the
// issuer must match cfg.Issuer exactly (trailing slash included, as go-oidc
// requires), an http:// issuer is accepted only on a loopback address, and
// the document must list a device_authorization_endpoint (ErrNoDeviceEndpoint
// otherwise).
func Discover(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("no client_id configured")
	}
	if err := checkIssuerURL(cfg.Issuer); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = DefaultHTTPClient()
	}
	wellKnown := strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration"
	meta, err := fetchDiscovery(ctx, hc, wellKnown)
	if err != nil {
		return nil, err
	}
	if meta.Issuer != cfg.Issuer {
		return nil, fmt.Errorf("discovery at %s names the issuer %q, but the configured issuer is %q: they must match exactly, trailing slash included",
			wellKnown, meta.Issuer, cfg.Issuer)
	}
	if meta.DeviceAuthURL == "" {
		return nil, fmt.Errorf("%w: the discovery document of %s lists no device_authorization_endpoint; enable the device code grant for client %q at the provider, or use a provider that supports it",
			ErrNoDeviceEndpoint, cfg.Issuer, cfg.ClientID)
	}
	if meta.TokenURL == "" || meta.JWKSURL == "" {
		return nil, fmt.Errorf("the discovery document of %s lacks token_endpoint or jwks_uri", cfg.Issuer)
	}
	for name, ep := range map[string]string{
		"device_authorization_endpoint": meta.DeviceAuthURL, "token_endpoint": meta.TokenURL,
		"jwks_uri": meta.JWKSURL, "revocation_endpoint": meta.RevocationURL,
	} {
		if ep == "" {
			continue
		}
		if err := checkEndpointURL(ep); err != nil {
			return nil, fmt.Errorf("discovery of %s: %s: %w", cfg.Issuer, name, err)
		}
	}
	var algs []string
	for _, a := range meta.Algorithms {
		if supportedAlgs[a] {
			algs = append(algs, a)
		}
	}
	pc := &oidc.ProviderConfig{
		IssuerURL: meta.Issuer, TokenURL: meta.TokenURL, DeviceAuthURL: meta.DeviceAuthURL,
		UserInfoURL: meta.UserInfoURL, JWKSURL: meta.JWKSURL, Algorithms: algs,
	}
	if cfg.AudienceParam == "" {
		cfg.AudienceParam = "resource"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	return &Provider{
		cfg:        cfg,
		hc:         hc,
		oidc:       pc.NewProvider(oidc.ClientContext(context.Background(), hc)),
		meta:       *meta,
		pollUnit:   5 * time.Second,
		retryPause: time.Second,
	}, nil
}

func fetchDiscovery(ctx context.Context, hc *http.Client, wellKnown string) (*discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", wellKnown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error already says `Get "<url>": <cause>`; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetching %s: %w", wellKnown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", wellKnown, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: the server answered %s; check the issuer URL", wellKnown, resp.Status)
	}
	var meta discovery
	if err := json.Unmarshal(body, &meta); err != nil {
		ct := resp.Header.Get("Content-Type")
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return nil, fmt.Errorf("fetching %s: expected a JSON discovery document, got Content-Type %q; check the issuer URL", wellKnown, ct)
		}
		return nil, fmt.Errorf("fetching %s: decoding the discovery document: %w", wellKnown, err)
	}
	return &meta, nil
}

// checkIssuerURL accepts https:// issuers, and http:// ones on loopback only.
func checkIssuerURL(issuer string) error {
	if issuer == "" {
		return errors.New("no issuer configured")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %q is not a URL: %w", issuer, err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("issuer %q must be an https:// URL", issuer)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("issuer %q uses plain http on a non-loopback host: use https:// (http:// is accepted only on 127.0.0.1, ::1 or localhost)", issuer)
	}
	return nil
}

// checkEndpointURL holds discovered endpoints to the issuer's rule, so a
// document served over https cannot send tokens over plain http to another host.
func checkEndpointURL(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("%q is not a URL", ep)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q must be an https:// URL", ep)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Issuer is the verified issuer URL.
func (p *Provider) Issuer() string { return p.meta.Issuer }

// CanRevoke reports whether the provider lists a revocation_endpoint.
func (p *Provider) CanRevoke() bool { return p.meta.RevocationURL != "" }

// resourceParams adds cfg.Resources under the configured parameter name.
func (p *Provider) resourceParams(form url.Values, resources []string) {
	for _, r := range resources {
		form.Add(p.cfg.AudienceParam, r)
	}
}
