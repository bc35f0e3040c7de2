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

func deniedIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return true
	}
	for _, p := range deniedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
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
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialIPs(ctx, network, ips, port)
	}
}
