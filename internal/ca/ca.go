// Package ca is crewgate's per-session certificate authority: an ECDSA key
// and certificate that live in memory only, name-constrained to the hosts
// crewgate intercepts, with leaf certificates issued on demand and cached,
// and the trust bundle that lets the child (and only the child) trust it.
//
// The CA private key is never written anywhere and no exported method
// returns it. Name constraints are defence in depth: a client that enforces
// them (Go, OpenSSL and so curl and Python, Node, Chrome 112+) refuses a
// certificate from this CA for any other name and for any IP address, even
// if the key leaked while the session ran.
package ca

import (
	"github.com/crewgate/crewgate/internal/authority"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// MaxValidity is the longest a session CA (and so any leaf it signs) is valid.
const MaxValidity = 24 * time.Hour

// clockSkew is how far NotBefore is set in the past, so a client whose clock
// runs a little behind still accepts a certificate made a moment ago.
const clockSkew = time.Minute

// defaultMaxLeaves bounds the leaf cache: a "*.suffix" entry permits any
// number of names, and a child must not grow crewgate's memory without limit.
// Past it, an arbitrary leaf is dropped and is signed again if asked for.
const defaultMaxLeaves = 4096

// CA is a per-session certificate authority that lives in memory only.
// Its methods are safe for concurrent use.
type CA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte

	exact    map[string]bool // hosts given as exact names
	suffixes []string        // hosts given as "*.suffix", stored as ".suffix"

	mu        sync.RWMutex
	leaves    map[string]*tls.Certificate
	maxLeaves int
	flight    singleflight.Group

	signings     atomic.Int64 // leaves signed, for tests
	testHookMiss func()       // called after a cache miss, before the flight; for tests
}

// New makes an ECDSA P-256 CA valid from a minute ago (for clock skew) until
// validity from now, capped at MaxValidity. Its name constraints are
// critical: the permitted DNS domains are hosts, where an entry is an exact
// name ("api.example.com") or "*.suffix" ("*.example.com", which permits
// subdomains of example.com but not example.com itself); all IPv4 and IPv6
// ranges are excluded; the path length is zero and the only key usage is
// certificate signing. An empty hosts list, an IP address or a malformed
// name among hosts, and a validity that is not positive are errors.
//
// X.509 name constraints cannot say "this name only": an exact entry
// "api.example.com" also lets verifiers accept its subdomains. Leaf is
// stricter and signs only names that hosts lists.
func New(hosts []string, validity time.Duration) (*CA, error) {
	if len(hosts) == 0 {
		return nil, errors.New("new session CA: no hosts to intercept")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new session CA: validity %v is not positive", validity)
	}
	validity = min(validity, MaxValidity)

	c := &CA{exact: map[string]bool{}, leaves: map[string]*tls.Certificate{}, maxLeaves: defaultMaxLeaves}
	var permitted []string
	seen := map[string]bool{}
	for _, h := range hosts {
		// The port of an entry does not matter here: a certificate names
		// hosts, and the proxy binds each route to its port.
		pat, err := authority.ParsePattern(h)
		if err != nil {
			return nil, fmt.Errorf("new session CA: %w", err)
		}
		name, wildcard := pat.Name, pat.Wildcard
		constraint := name
		if wildcard {
			constraint = "." + name
			c.suffixes = append(c.suffixes, constraint)
		} else {
			c.exact[name] = true
		}
		if !seen[constraint] {
			seen[constraint] = true
			permitted = append(permitted, constraint)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new session CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new session CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"crewgate"},
			CommonName:   "crewgate session CA " + shortID(serial),
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,

		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitted,
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new session CA: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new session CA: parse certificate: %w", err)
	}
	c.key, c.cert = key, cert
	c.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return c, nil
}

// Certificate returns the CA certificate. Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// PEM returns the CA certificate, PEM-encoded. It never contains the key.
func (c *CA) PEM() []byte { return append([]byte(nil), c.pem...) }

// Leaf returns a certificate for host signed by the CA: a fresh ECDSA P-256
// key, host as its only DNS name, valid until the CA expires. host may carry
// a ":port", which is ignored. Leaves are cached per host, and concurrent
// first requests for one host share a single signing. A host that the CA's
// hosts do not list (an exact name, or a subdomain of a "*.suffix" entry)
// is an error and nothing is signed; so is an IP address.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	// Only names that passed the check are cached, so an exact hit is safe.
	if leaf := c.cached(host); leaf != nil {
		return leaf, nil
	}
	name, err := c.allowed(host)
	if err != nil {
		return nil, err
	}
	if leaf := c.cached(name); leaf != nil {
		return leaf, nil
	}
	if c.testHookMiss != nil {
		c.testHookMiss()
	}
	v, err, _ := c.flight.Do(name, func() (any, error) {
		// A flight that finished between the lookup above and this one
		// starting has already stored the leaf.
		if leaf := c.cached(name); leaf != nil {
			return leaf, nil
		}
		leaf, err := c.issue(&x509.Certificate{DNSNames: []string{name}})
		if err != nil {
			return nil, err
		}
		c.store(name, leaf)
		return leaf, nil
	})
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", name, err)
	}
	return v.(*tls.Certificate), nil
}

// TLSConfig returns a fresh server-side TLS configuration for intercepting
// host: the leaf from Leaf, TLS 1.2 or newer, and HTTP/1.1 only.
func (c *CA) TLSConfig(host string) (*tls.Config, error) {
	leaf, err := c.Leaf(host)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

func (c *CA) cached(name string) *tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.leaves[name]
}

func (c *CA) store(name string, leaf *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.leaves) >= c.maxLeaves {
		for k := range c.leaves { // map order is random enough for eviction
			delete(c.leaves, k)
			break
		}
	}
	c.leaves[name] = leaf
}

// allowed normalises host and reports an error unless the CA's hosts list it.
func (c *CA) allowed(host string) (string, error) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("issue certificate for %s: IP addresses are outside the session CA's constraints", host)
	}
	if err := authority.CheckName(name); err != nil {
		return "", fmt.Errorf("issue certificate for %q: %w", host, err)
	}
	if c.exact[name] {
		return name, nil
	}
	for _, s := range c.suffixes {
		if strings.HasSuffix(name, s) {
			return name, nil
		}
	}
	return "", fmt.Errorf("issue certificate for %s: host is not intercepted by this session CA", name)
}

// issue signs a leaf from tmpl (its names) without checking them against the
// constraints; Leaf checks first. Tests call it to make leaves Leaf refuses.
func (c *CA) issue(tmpl *x509.Certificate) (*tls.Certificate, error) {
	c.signings.Add(1)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	t := *tmpl
	t.SerialNumber = serial
	if len(t.DNSNames) > 0 {
		t.Subject = pkix.Name{CommonName: t.DNSNames[0]}
	}
	t.NotBefore = time.Now().Add(-clockSkew)
	if t.NotBefore.Before(c.cert.NotBefore) {
		t.NotBefore = c.cert.NotBefore
	}
	t.NotAfter = c.cert.NotAfter
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	t.BasicConstraintsValid = true
	t.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, &t, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	// The chain is the leaf alone: clients hold the CA as a trust anchor.
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // positive, never zero
}

func shortID(serial *big.Int) string {
	b := serial.Bytes()
	return hex.EncodeToString(b[:min(4, len(b))])
}
