// Package authority is crewgate's one notion of "which host and port":
// parsing and normalising a request's authority (host and port), parsing the
// `hosts` entries of the config (an exact name or "*.suffix", optionally with
// ":port"), and matching one against the other. The config, the proxy's
// routes, the policy's host conditions and the session CA all use it, so a
// name means the same thing everywhere.
//
// Normal form: ASCII lower case, one trailing dot removed, IPv6 without
// brackets, the port as a decimal number without leading zeros. Two
// authorities are the same when their normal forms are equal.
package authority

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Default ports: a bare name in a hosts entry means 443 for HTTPS (CONNECT)
// and 80 for plain HTTP.
const (
	HTTPS = "443"
	HTTP  = "80"
)

// Authority is a normalised host and port.
type Authority struct {
	Host string // lower case, no trailing dot, IPv6 without brackets (a zone kept)
	Port string // decimal, 1-65535
}

// String is host:port, with brackets around an IPv6 host.
func (a Authority) String() string { return net.JoinHostPort(a.Host, a.Port) }

// Parse normalises hostport, which may lack a port (defaultPort is then
// used). It refuses what no server could be named by: an empty host, a port
// that is not a number in 1-65535, characters outside a DNS name or IP
// literal.
func Parse(hostport, defaultPort string) (Authority, error) {
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	} else if strings.Count(hostport, ":") == 1 {
		// "host:" or a port net.SplitHostPort refused.
		return Authority{}, fmt.Errorf("authority %q: bad port", hostport)
	}
	if port == "" {
		port = defaultPort
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
		return Authority{}, fmt.Errorf("authority %q: port %q is not a number from 1 to 65535", hostport, port)
	}
	host = normName(host)
	if host == "" {
		return Authority{}, fmt.Errorf("authority %q: empty host", hostport)
	}
	if _, err := netip.ParseAddr(host); err != nil && checkName(host) != nil {
		return Authority{}, fmt.Errorf("authority %q: not a host name or IP address", hostport)
	}
	return Authority{Host: host, Port: strconv.Itoa(n)}, nil
}

// normName lower-cases a host and drops one trailing dot.
func normName(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// Pattern is one entry of a hosts list: an exact name or "*.suffix" (any
// name below suffix, not suffix itself), and a port or none.
type Pattern struct {
	Name     string // lower case; for a wildcard, the suffix without "*."
	Wildcard bool
	Port     string // "" means the scheme's default port (HTTPS or HTTP)
}

// String is the entry in its normal form.
func (p Pattern) String() string {
	s := p.Name
	if p.Wildcard {
		s = "*." + s
	}
	if p.Port != "" {
		s += ":" + p.Port
	}
	return s
}

// ParsePattern checks and normalises one hosts entry. IP addresses are
// refused (the session CA cannot sign them), and so is a wildcard whose
// suffix is a public suffix ("*.com", "*.co.uk", "*.github.io"): it would
// claim, and let the CA sign for, every site under it.
func ParsePattern(entry string) (Pattern, error) {
	s := strings.TrimSpace(entry)
	var p Pattern
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n < 1 || n > 65535 || !isDigits(s[i+1:]) {
			return p, fmt.Errorf("host %q: the part after ':' must be a port from 1 to 65535 (no scheme or path)", entry)
		}
		p.Port, s = strconv.Itoa(n), s[:i]
	}
	s = normName(s)
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		s, p.Wildcard = rest, true
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return p, fmt.Errorf("host %q: IP addresses cannot be intercepted (the session CA excludes all IP ranges)", entry)
	}
	if err := checkName(s); err != nil {
		return p, fmt.Errorf("host %q: %w", entry, err)
	}
	if p.Wildcard {
		if ps, _ := publicsuffix.PublicSuffix(s); ps == s {
			return p, fmt.Errorf("host %q: %s is a public suffix, so the wildcard would claim every site under it; name the hosts or a suffix you own", entry, s)
		}
	}
	p.Name = s
	return p, nil
}

// ParseRuleHost checks and normalises a host a policy rule names: an exact
// name, "*.suffix" or an IP address, without a port (rules match the host of
// the request's one authority, whatever its port). Unlike a hosts entry of
// an upstream, a rule may name an IP address or a public suffix ("*.ru" in a
// deny rule claims nothing for the CA).
func ParseRuleHost(entry string) (Pattern, error) {
	s := normName(strings.TrimSpace(entry))
	var p Pattern
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		s, p.Wildcard = rest, true
	}
	if ip, err := netip.ParseAddr(s); err == nil && !p.Wildcard && ip.Zone() == "" {
		p.Name = ip.String()
		return p, nil
	}
	if err := checkName(s); err != nil {
		return p, fmt.Errorf("%q is not a host name, *.suffix or IP address (no scheme, port or path)", entry)
	}
	p.Name = s
	return p, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// MatchName reports whether host (normalised) is one p names, whatever the
// port.
func (p Pattern) MatchName(host string) bool {
	if p.Wildcard {
		return len(host) > len(p.Name)+1 && strings.HasSuffix(host, p.Name) && host[len(host)-len(p.Name)-1] == '.'
	}
	return host == p.Name
}

// Match reports whether a is one p names; defaultPort (HTTPS or HTTP) is the
// port a pattern without one stands for.
func (p Pattern) Match(a Authority, defaultPort string) bool {
	port := p.Port
	if port == "" {
		port = defaultPort
	}
	return a.Port == port && p.MatchName(a.Host)
}

// CheckName accepts a lower-case ASCII DNS name (IDNs in their xn-- form).
func CheckName(name string) error { return checkName(name) }

func checkName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > 253 {
		return errors.New("host name longer than 253 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("host name has an empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			ok := b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' ||
				b == '-' && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("host name has an invalid character %q (want letters, digits, '-', '_'; a wildcard only as a leading \"*.\")", b)
			}
		}
	}
	return nil
}
