package session

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/creds"
	"github.com/crewgate/crewgate/internal/mask"
	"github.com/crewgate/crewgate/internal/proxy"
)

// Credentials opens what upstreams' credential sources need; the caller
// owns the keyring and the identity provider. Its errors are returned as
// they are, so they may carry the caller's exit codes and hints.
type Credentials interface {
	// Secret is the keyring secret name (source: secret) of upstream.
	Secret(upstream, name string) (proxy.CredentialSource, error)
	// Login is the login oidc upstreams share, checked to work.
	Login(ctx context.Context) (*creds.Session, error)
}

// upstreams is what the config's upstreams become for one run.
type upstreams struct {
	list         []proxy.Upstream
	placeholders map[string]string // env var -> placeholder
	secrets      []string          // static secret values, kept out of the crew's environment
}

// buildUpstreams checks every credential before the crew starts, so a
// missing secret or a dead login stops the run with what fixes it.
func buildUpstreams(ctx context.Context, cfg *config.Config, c Credentials) (*upstreams, error) {
	out := &upstreams{placeholders: map[string]string{}}
	var login *creds.Session
	for _, u := range cfg.Upstreams {
		pu, err := RouteOf(cfg, u)
		if err != nil {
			return nil, err
		}
		switch u.Credential.Source {
		case "secret":
			src, err := c.Secret(u.Name, u.Credential.Secret)
			if err != nil {
				return nil, err
			}
			pu.Source = src
			if v, err := src.Token(ctx); err == nil {
				out.secrets = append(out.secrets, v)
			}
		case "oidc":
			if login == nil {
				if login, err = c.Login(ctx); err != nil {
					return nil, err
				}
			}
			pu.Source = login.OIDC(u.Credential.Scopes, u.Credential.Audience, u.Credential.Exchange)
		}
		if len(u.Env) > 0 {
			pu.Placeholder = "crewgate-" + u.Name + "-placeholder-" + randomHex(8)
			for _, name := range u.Env {
				out.placeholders[name] = pu.Placeholder
			}
		}
		out.list = append(out.list, pu)
	}
	return out, nil
}

// RouteOf is what the proxy needs of an upstream besides its credential;
// `policy explain` builds its proxy from it too.
func RouteOf(cfg *config.Config, u config.Upstream) (proxy.Upstream, error) {
	pu := proxy.Upstream{
		Name:         u.Name,
		Hosts:        u.Hosts,
		Header:       u.Credential.Header,
		Format:       u.Credential.Format,
		Address:      u.Address,
		ResponseMask: MaskConfig(cfg, u.Mask.Response),
	}
	if len(u.Mask.Request) > 0 {
		mc := MaskConfig(cfg, u.Mask.Request)
		pu.RequestMask = &mc
	}
	if u.CAFile != "" {
		pool, err := rootsWith(u.CAFile)
		if err != nil {
			return pu, &Error{What: "upstream " + u.Name + ": ca_file", Err: err, Config: true}
		}
		pu.RootCAs = pool
	}
	return pu, nil
}

// MaskConfig is the masking configuration for a list of detectors ("" or
// empty: the config's mask.detectors).
func MaskConfig(cfg *config.Config, detectors []string) mask.Config {
	mc := mask.Config{Detectors: cfg.Mask.Detectors, JSONFields: cfg.Mask.JSONFields, Replacement: cfg.Mask.Replacement}
	if len(detectors) > 0 {
		mc.Detectors = detectors
	}
	for _, c := range cfg.Mask.Custom {
		mc.Custom = append(mc.Custom, mask.Custom{Name: c.Name, Pattern: c.Pattern})
	}
	return mc
}

// rootsWith is the system roots plus the certificates in file.
func rootsWith(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
