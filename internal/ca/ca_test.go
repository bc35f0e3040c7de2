package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testHosts = []string{"good.test", "*.example.test"}

func newTestCA(t testing.TB) *CA {
	t.Helper()
	c, err := New(testHosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

func TestNewCertificate(t *testing.T) {
	c := newTestCA(t)
	cert := c.Certificate()

	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Error("not a CA certificate")
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v; want 0, true", cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if cert.KeyUsage != x509.KeyUsageCertSign {
		t.Errorf("KeyUsage = %v, want CertSign only", cert.KeyUsage)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if !strings.HasPrefix(cert.Subject.CommonName, "crewgate session CA ") || len(cert.Subject.CommonName) <= len("crewgate session CA ") {
		t.Errorf("CommonName = %q", cert.Subject.CommonName)
	}

	if !cert.PermittedDNSDomainsCritical {
		t.Error("name constraints not critical")
	}
	critical := false
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidNameConstraints) {
			critical = ext.Critical
		}
	}
	if !critical {
		t.Error("name constraints extension missing or not marked critical in the DER")
	}
	if want := []string{"good.test", ".example.test"}; !slices.Equal(cert.PermittedDNSDomains, want) {
		t.Errorf("PermittedDNSDomains = %q, want %q", cert.PermittedDNSDomains, want)
	}
	var excluded []string
	for _, r := range cert.ExcludedIPRanges {
		excluded = append(excluded, r.String())
	}
	if want := []string{"0.0.0.0/0", "::/0"}; !slices.Equal(excluded, want) {
		t.Errorf("ExcludedIPRanges = %q, want %q", excluded, want)
	}
}

func TestNewValidity(t *testing.T) {
	for _, tc := range []struct {
		validity, want time.Duration
	}{
		{time.Hour, time.Hour},
		{MaxValidity, MaxValidity},
		{48 * time.Hour, MaxValidity},
		{365 * 24 * time.Hour, MaxValidity},
	} {
		before := time.Now()
		c, err := New(testHosts, tc.validity)
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		cert := c.Certificate()
		// Certificate times have second precision.
		if got := cert.NotAfter; got.Before(before.Add(tc.want).Truncate(time.Second)) || got.After(after.Add(tc.want)) {
			t.Errorf("validity %v: NotAfter %v, want %v from now", tc.validity, got, tc.want)
		}
		if got := cert.NotBefore; got.Before(before.Add(-clockSkew).Truncate(time.Second)) || got.After(after.Add(-clockSkew)) {
			t.Errorf("validity %v: NotBefore %v, want a minute ago", tc.validity, got)
		}
		if span := cert.NotAfter.Sub(cert.NotBefore); span > MaxValidity+clockSkew {
			t.Errorf("validity %v: certificate spans %v", tc.validity, span)
		}
	}
	for _, v := range []time.Duration{0, -time.Hour} {
		if _, err := New(testHosts, v); err == nil {
			t.Errorf("validity %v: no error", v)
		}
	}
}

func TestNewBadHosts(t *testing.T) {
	for _, hosts := range [][]string{
		nil, {}, {""}, {"*"}, {"*."}, {"1.2.3.4"}, {"::1"}, {"*.10.0.0.1"}, {"a..b"}, {"foo.*.test"},
		{"a b.test"}, {"-a.test"}, {"a-.test"}, {"good.test:0"}, {"good.test:http"}, {"*.com"}, {"*.co.uk"}, {"good.test", "evil/.test"},
		{strings.Repeat("a", 64) + ".test"},
	} {
		if c, err := New(hosts, time.Hour); err == nil {
			t.Errorf("New(%q) = %v, want an error", hosts, c.Certificate().PermittedDNSDomains)
		}
	}
	c, err := New([]string{"API.Example.test.", "api.example.test", "xn--bcher-kva.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"api.example.test", "xn--bcher-kva.test"}; !slices.Equal(c.Certificate().PermittedDNSDomains, want) {
		t.Errorf("PermittedDNSDomains = %q, want %q", c.Certificate().PermittedDNSDomains, want)
	}
}

func TestPEMHasCertificateOnly(t *testing.T) {
	c := newTestCA(t)
	p := c.PEM()
	block, rest := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("PEM() is not exactly one CERTIFICATE block:\n%s", p)
	}
	if !bytes.Equal(block.Bytes, c.Certificate().Raw) {
		t.Error("PEM() is not the CA certificate")
	}
	p[0] = 'X'
	if c.PEM()[0] != '-' {
		t.Error("PEM() returns the CA's own slice")
	}
}

// verify runs Go's verifier on leaf for name with only the CA as a root.
func verify(c *CA, leaf *tls.Certificate, name string) error {
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())
	_, err := leaf.Leaf.Verify(x509.VerifyOptions{
		DNSName:   name,
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestGoVerifierHonoursConstraints(t *testing.T) {
	c := newTestCA(t)

	for _, host := range []string{"good.test", "a.example.test", "b.a.example.test"} {
		leaf, err := c.Leaf(host)
		if err != nil {
			t.Fatalf("Leaf(%s): %v", host, err)
		}
		if err := verify(c, leaf, host); err != nil {
			t.Errorf("Leaf(%s) does not verify: %v", host, err)
		}
	}

	for _, tc := range []struct {
		name string
		tmpl *x509.Certificate
	}{
		{"evil.test", &x509.Certificate{DNSNames: []string{"evil.test"}}},
		{"example.test", &x509.Certificate{DNSNames: []string{"example.test"}}},
		{"notexample.test", &x509.Certificate{DNSNames: []string{"notexample.test"}}},
		{"127.0.0.1", &x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}},
		{"::1", &x509.Certificate{IPAddresses: []net.IP{net.IPv6loopback}}},
		// A permitted name does not carry an IP address past the exclusion.
		{"good.test", &x509.Certificate{DNSNames: []string{"good.test"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}},
	} {
		leaf, err := c.issue(tc.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		err = verify(c, leaf, tc.name)
		var invalid x509.CertificateInvalidError
		if !errors.As(err, &invalid) || invalid.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("leaf %v %v: verify error %v, want CANotAuthorizedForThisName", tc.tmpl.DNSNames, tc.tmpl.IPAddresses, err)
		}
	}

	// RFC 5280 cannot express "exactly good.test": verifiers accept its
	// subdomains, which is why Leaf refuses them (below).
	leaf, err := c.issue(&x509.Certificate{DNSNames: []string{"x.good.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(c, leaf, "x.good.test"); err != nil {
		t.Errorf("x.good.test: %v (the constraint semantics changed?)", err)
	}
}

func TestLeafRefusesOutsideHosts(t *testing.T) {
	c := newTestCA(t)
	for _, host := range []string{
		"evil.test", "example.test", "x.good.test", "good.test.evil", "agood.test", "127.0.0.1", "[::1]:443",
		"::1", "", ".", "*.example.test", "a_b c.example.test",
	} {
		if leaf, err := c.Leaf(host); err == nil {
			t.Errorf("Leaf(%q) = %v, want an error", host, leaf.Leaf.DNSNames)
		}
	}
	if n := c.signings.Load(); n != 0 {
		t.Errorf("%d leaves signed for refused hosts", n)
	}
}

func TestLeafCertificate(t *testing.T) {
	c := newTestCA(t)
	leaf, err := c.Leaf("good.test")
	if err != nil {
		t.Fatal(err)
	}
	cert := leaf.Leaf
	if !slices.Equal(cert.DNSNames, []string{"good.test"}) || len(cert.IPAddresses) != 0 {
		t.Errorf("SANs %q %v, want good.test only", cert.DNSNames, cert.IPAddresses)
	}
	if cert.IsCA {
		t.Error("leaf is a CA")
	}
	if key, ok := leaf.PrivateKey.(*ecdsa.PrivateKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", leaf.PrivateKey)
	} else if key.Equal(c.key) {
		t.Error("leaf carries the CA key")
	}
	if cert.NotAfter.After(c.Certificate().NotAfter) || cert.NotBefore.Before(c.Certificate().NotBefore) {
		t.Errorf("leaf valid %v..%v outside the CA's %v..%v", cert.NotBefore, cert.NotAfter, c.Certificate().NotBefore, c.Certificate().NotAfter)
	}
	if len(leaf.Certificate) != 1 || !bytes.Equal(leaf.Certificate[0], cert.Raw) {
		t.Error("chain is not the leaf alone")
	}
	for _, host := range []string{"GOOD.test", "good.test.", "good.test:443"} {
		again, err := c.Leaf(host)
		if err != nil || again != leaf {
			t.Errorf("Leaf(%q) = %p, %v; want the cached %p", host, again, err, leaf)
		}
	}
	if n := c.signings.Load(); n != 1 {
		t.Errorf("%d signings, want 1", n)
	}
}

func TestLeafSingleFlight(t *testing.T) {
	c := newTestCA(t)
	const n = 64
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		got   [n]*tls.Certificate
		errs  [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = c.Leaf("new.example.test")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("goroutine %d got a different certificate", i)
		}
	}
	if s := c.signings.Load(); s != 1 {
		t.Errorf("%d concurrent first requests signed %d times, want 1", n, s)
	}
}

// TestLeafMissThenFlightDone covers a request that misses the cache just as
// another request's flight stores the leaf and ends: it must not sign again.
func TestLeafMissThenFlightDone(t *testing.T) {
	c := newTestCA(t)
	var first atomic.Bool
	missed, release := make(chan struct{}), make(chan struct{})
	c.testHookMiss = func() {
		if first.CompareAndSwap(false, true) {
			close(missed)
			<-release
		}
	}
	late := make(chan *tls.Certificate)
	go func() {
		leaf, err := c.Leaf("race.example.test")
		if err != nil {
			t.Error(err)
		}
		late <- leaf
	}()
	<-missed
	leaf, err := c.Leaf("race.example.test") // signs, stores, ends its flight
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if got := <-late; got != leaf {
		t.Error("the late request got a different certificate")
	}
	if n := c.signings.Load(); n != 1 {
		t.Errorf("%d signings, want 1", n)
	}
}

func TestLeafCacheBounded(t *testing.T) {
	c := newTestCA(t)
	c.maxLeaves = 3
	for _, h := range []string{"a", "b", "c", "d", "e"} {
		if _, err := c.Leaf(h + ".example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.leaves); n != 3 {
		t.Errorf("cache holds %d leaves, want 3", n)
	}
	if _, err := c.Leaf("e.example.test"); err != nil {
		t.Fatal(err)
	}
	if n := c.signings.Load(); n != 5 {
		t.Errorf("%d signings, want 5 (the last leaf stays cached)", n)
	}
}

func TestTLSConfig(t *testing.T) {
	c := newTestCA(t)
	cfg, err := c.TLSConfig("good.test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || !slices.Equal(cfg.NextProtos, []string{"http/1.1"}) || len(cfg.Certificates) != 1 {
		t.Errorf("config: MinVersion %x, NextProtos %q, %d certificates", cfg.MinVersion, cfg.NextProtos, len(cfg.Certificates))
	}
	if _, err := c.TLSConfig("evil.test"); err == nil {
		t.Error("TLSConfig(evil.test): no error")
	}

	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())
	// Over loopback TCP, not net.Pipe: a client that aborts writes an alert
	// while the server is still writing, which an unbuffered pipe deadlocks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handshake := func(client *tls.Config) (tls.ConnectionState, error) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc, err := ln.Accept()
			if err != nil {
				return
			}
			defer sc.Close()
			_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
			_ = tls.Server(sc, cfg).Handshake()
		}()
		defer func() { <-done }()
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer cc.Close()
		_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
		cl := tls.Client(cc, client)
		err = cl.Handshake()
		return cl.ConnectionState(), err
	}
	st, err := handshake(&tls.Config{RootCAs: roots, ServerName: "good.test", NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("negotiated %q, want http/1.1", st.NegotiatedProtocol)
	}
	if _, err := handshake(&tls.Config{RootCAs: roots, ServerName: "good.test", MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
	if _, err := handshake(&tls.Config{ServerName: "good.test"}); err == nil {
		t.Error("handshake without the session CA as a root succeeded")
	}
}
