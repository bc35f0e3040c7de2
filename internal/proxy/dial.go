package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// errDeniedAddress marks a dial refused because of where it would go.
var errDeniedAddress = errors.New("address denied")

// deniedPrefixes are never reached through the proxy unless an upstream's
// address names them: link-local ranges (which hold the cloud metadata
// services) and the metadata addresses that live elsewhere.
var deniedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // IPv4 link-local, AWS/GCP/Azure/OpenStack metadata
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure wire server
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast
	netip.MustParsePrefix("ff00::/8"),           // IPv6 multicast
}

// deniedIP reports whether ip, or an IPv4 address it carries, is denied. An
// IPv6 zone is dropped first (netip's Contains never matches a zoned
// address), and the IPv4 address inside an IPv6 one is checked on its own:
// mapped and compatible forms, NAT64 (64:ff9b::/96 and every RFC 6052
// layout of 64:ff9b:1::/48), 6to4 (2002::/16) and a Teredo client
// (2001::/32), each of which a gateway on the path may turn back into
// 169.254.169.254.
func deniedIP(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	if ip.IsUnspecified() || deniedPrefix(ip) {
		return true
	}
	if !ip.Is6() {
		return false
	}
	for _, v4 := range embeddedIPv4(ip.As16()) {
		if v4.IsUnspecified() || deniedPrefix(v4) {
			return true
		}
	}
	return false
}

func deniedPrefix(ip netip.Addr) bool {
	for _, p := range deniedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
	compatible     = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 lists the IPv4 addresses an IPv6 address may stand for.
func embeddedIPv4(b [16]byte) []netip.Addr {
	ip := netip.AddrFrom16(b)
	v4 := func(i ...int) netip.Addr {
		return netip.AddrFrom4([4]byte{b[i[0]], b[i[1]], b[i[2]], b[i[3]]})
	}
	switch {
	case nat64WellKnown.Contains(ip), compatible.Contains(ip) && !ip.IsLoopback():
		return []netip.Addr{v4(12, 13, 14, 15)}
	case nat64Local.Contains(ip):
		// RFC 6052 section 2.2: prefixes of /48, /56, /64 and /96 put the
		// address at different bits (skipping byte 8, the u octet).
		return []netip.Addr{v4(6, 7, 9, 10), v4(7, 9, 10, 11), v4(9, 10, 11, 12), v4(12, 13, 14, 15)}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(2, 3, 4, 5)}
	case teredo.Contains(ip):
		return []netip.Addr{v4(4, 5, 6, 7), netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})}
	}
	return nil
}

// allowedIPs resolves host and refuses it when any address is denied; the
// caller dials only the addresses checked here, so DNS cannot change the
// answer in between.
func (p *Proxy) allowedIPs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if deniedIP(ip) {
			return nil, fmt.Errorf("%w: %s is a link-local or cloud metadata address", errDeniedAddress, host)
		}
		return []netip.Addr{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := p.cfg.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var ips []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if deniedIP(ip) {
			return nil, fmt.Errorf("%w: %s resolves to %s, a link-local or cloud metadata address", errDeniedAddress, host, ip.Unmap())
		}
		ips = append(ips, ip.Unmap())
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", host)
	}
	return ips, nil
}

var netDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// dialIPs dials the first of ips that answers.
func dialIPs(ctx context.Context, network string, ips []netip.Addr, port string) (net.Conn, error) {
	var firstErr error
	for _, ip := range ips {
		c, err := netDialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// dialer is the DialContext of a transport: an upstream's fixed address
// (trusted, since the config names it), or the checked addresses of the host.
func (p *Proxy) dialer(address string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if address != "" {
			return netDialer.DialContext(ctx, network, address)
		}
		host, port := splitHostPort(addr, "443")
		ips, err := p.allowedIPs(ctx, host)
		if err != nil {
			return nil, err
		}
		return dialIPs(ctx, network, ips, port)
	}
}

// tunnelDialer dials a CONNECT tunnel's target: the addresses checked when
// the CONNECT was routed, or through crewgate's own upstream proxy.
func (p *Proxy) tunnelDialer(ips []netip.Addr, port string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.cfg.UpstreamProxy != nil {
		chain := p.gp.NewConnectDialToProxy(p.cfg.UpstreamProxy.String())
		return func(_ context.Context, network, addr string) (net.Conn, error) { return chain(network, addr) }
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if len(ips) == 0 { // not resolved at the route step: resolve and check now
			host, _ := splitHostPort(addr, port)
			checked, err := p.allowedIPs(ctx, host)
			if err != nil {
				return nil, err
			}
			return dialIPs(ctx, network, checked, port)
		}
		return dialIPs(ctx, network, ips, port)
	}
}
