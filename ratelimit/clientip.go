package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// IPKeyOptions configures [IPKey]. The zero value trusts no proxy (the key
// is the address of the TCP peer), and limits IPv6 clients by their /64
// network.
type IPKeyOptions struct {
	// TrustedProxies are the networks of the reverse proxies and load
	// balancers in front of the server, such as
	// netip.MustParsePrefix("10.0.0.0/8"). Only a request whose TCP peer is
	// in one of them has its X-Forwarded-For and X-Real-IP headers read;
	// from anyone else those headers are ignored, since any client can send
	// them.
	TrustedProxies []netip.Prefix
	// IPv4Bits is the prefix length IPv4 clients are limited by; 0 means
	// 32, each address on its own.
	IPv4Bits int
	// IPv6Bits is the prefix length IPv6 clients are limited by; 0 means
	// 64, since one subscriber usually holds a whole /64 and can use any of
	// its addresses. 128 limits each address on its own.
	IPv6Bits int
}

// IPKey returns a [KeyFunc] that limits requests by client IP address.
//
// The client is the request's TCP peer (http.Request.RemoteAddr), unless
// that peer is a trusted proxy. Then the client is found in
// X-Forwarded-For, read right to left (each proxy appends the address it
// received the request from) skipping trusted proxies: the first address
// that is not a trusted proxy is the client. Everything left of it was
// written by the client or its own proxies and could be forged, so it is
// never used. If every address in the header is a trusted proxy, the
// leftmost is the client; if an entry is not an address, the client is the
// trusted proxy that forwarded it. Without X-Forwarded-For, X-Real-IP
// (set by nginx's realip setup) is used if it holds an address.
//
// IPv4-mapped IPv6 addresses are treated as IPv4. The key is the address,
// such as "192.0.2.1", or, for a shorter prefix, its network, such as
// "2001:db8:1:2::/64". The KeyFunc returns an error only if RemoteAddr
// holds no address (as with a Unix socket).
//
// IPKey panics, with a message starting "ratelimit: ", if a trusted prefix
// is invalid or a prefix length is out of range. The KeyFunc is safe for
// concurrent use.
func IPKey(opts IPKeyOptions) KeyFunc {
	if opts.IPv4Bits == 0 {
		opts.IPv4Bits = 32
	}
	if opts.IPv6Bits == 0 {
		opts.IPv6Bits = 64
	}
	if opts.IPv4Bits < 1 || opts.IPv4Bits > 32 || opts.IPv6Bits < 1 || opts.IPv6Bits > 128 {
		panic(fmt.Sprintf("ratelimit: IPKeyOptions.IPv4Bits %d or IPv6Bits %d out of range", opts.IPv4Bits, opts.IPv6Bits))
	}
	k := &ipKeyer{v4: opts.IPv4Bits, v6: opts.IPv6Bits}
	for _, p := range opts.TrustedProxies {
		if !p.IsValid() {
			panic(fmt.Sprintf("ratelimit: IPKeyOptions.TrustedProxies has an invalid prefix %v", p))
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		k.trusted = append(k.trusted, p.Masked())
	}
	return k.key
}

type ipKeyer struct {
	trusted []netip.Prefix
	v4, v6  int
}

func (k *ipKeyer) key(r *http.Request) (string, error) {
	a, ok := k.clientIP(r)
	if !ok {
		return "", fmt.Errorf("ratelimit: no client IP address in RemoteAddr %.64q", r.RemoteAddr)
	}
	bits := k.v6
	if a.Is4() {
		bits = k.v4
	}
	if bits == a.BitLen() {
		return a.String(), nil
	}
	p, _ := a.Prefix(bits)
	return p.String(), nil
}

func (k *ipKeyer) isTrusted(a netip.Addr) bool {
	for _, p := range k.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (k *ipKeyer) clientIP(r *http.Request) (netip.Addr, bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok || !k.isTrusted(peer) {
		return peer, ok
	}
	client, seen := peer, false
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			var part string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				line, part = line[:j], line[j+1:]
			} else {
				line, part = "", line
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			a, ok := parseAddr(part)
			if !ok {
				return client, true
			}
			client, seen = a, true
			if !k.isTrusted(a) {
				return a, true
			}
		}
	}
	if !seen {
		if a, ok := parseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); ok {
			return a, true
		}
	}
	return client, true
}

// parseAddr parses an IP address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80", "[2001:db8::1]"),
// dropping any zone and unmapping IPv4-mapped IPv6 addresses.
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
				return netip.Addr{}, false
			}
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil || !a.Is6() {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.WithZone("").Unmap(), true
}
