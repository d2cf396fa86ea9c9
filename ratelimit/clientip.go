package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/apikit/apikit/internal/netlist"
)

// Headers a trusted proxy reports the client's address in, for
// [IPKeyOptions].ProxyHeader.
const (
	// HeaderXForwardedFor is X-Forwarded-For: a comma-separated list to
	// which each proxy appends the address it received the request from.
	HeaderXForwardedFor = "X-Forwarded-For"
	// HeaderForwarded is RFC 7239's Forwarded: a list of elements whose
	// for= parameters are read like X-Forwarded-For's entries.
	HeaderForwarded = "Forwarded"
	// HeaderXRealIP is X-Real-IP: one address, set (not appended to) by
	// the proxy, as nginx's proxy_set_header X-Real-IP $remote_addr does.
	HeaderXRealIP = "X-Real-Ip"
)

// IPKeyOptions configures [IPKey]. The zero value trusts no proxy (the key
// is the address of the TCP peer), and limits IPv6 clients by their /64
// network.
type IPKeyOptions struct {
	// TrustedProxies are the networks of the reverse proxies and load
	// balancers in front of the server, such as
	// netip.MustParsePrefix("10.0.0.0/8") (see [ParseTrustedProxies] for a
	// configuration setting). Only a request whose TCP peer is in one of
	// them has its ProxyHeader read; from anyone else it is ignored, since
	// any client can send it.
	TrustedProxies []netip.Prefix
	// ProxyHeader is the header the trusted proxies report the client in:
	// [HeaderXForwardedFor] (the default, also for ""), [HeaderForwarded]
	// or [HeaderXRealIP] (any capitalisation). Only that header is read:
	// the others, even from a trusted proxy, may have come from the client
	// unchanged. IPKey panics for any other name.
	ProxyHeader string
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
// that peer is a trusted proxy. Then the client is found in the
// ProxyHeader. X-Forwarded-For (or Forwarded's for= parameters) is read
// right to left, across all its lines (each proxy appends the address it
// received the request from), skipping trusted proxies: the first address
// that is not a trusted proxy is the client. Everything left of it was
// written by the client or its own proxies and could be forged, so it is
// never used. If every address in the header is a trusted proxy, the
// leftmost is the client; if an entry is not an address (Forwarded's
// "unknown" or an obfuscated identifier, or a malformed line), the client
// is the trusted proxy that forwarded it. X-Real-IP is one address; if it
// holds none, the client is the peer.
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
	k := &ipKeyer{v4: opts.IPv4Bits, v6: opts.IPv6Bits, header: http.CanonicalHeaderKey(opts.ProxyHeader)}
	switch k.header {
	case "":
		k.header = HeaderXForwardedFor
	case HeaderXForwardedFor, HeaderForwarded, HeaderXRealIP:
	default:
		panic(fmt.Sprintf("ratelimit: IPKeyOptions.ProxyHeader %.64q is none of X-Forwarded-For, Forwarded and X-Real-IP", opts.ProxyHeader))
	}
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
	header  string // canonical
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
	if k.header == HeaderXRealIP {
		if a, ok := parseAddr(strings.TrimSpace(r.Header.Get(HeaderXRealIP))); ok {
			return a, true
		}
		return peer, true
	}
	client := peer
	lines := r.Header.Values(k.header)
	for i := len(lines) - 1; i >= 0; i-- {
		var hops []string
		if k.header == HeaderForwarded {
			var ok bool
			if hops, ok = forwardedFor(lines[i]); !ok {
				return client, true
			}
		} else {
			hops = strings.Split(lines[i], ",")
		}
		for j := len(hops) - 1; j >= 0; j-- {
			hop := strings.TrimSpace(hops[j])
			if hop == "" && k.header == HeaderXForwardedFor {
				continue // an empty list element
			}
			a, ok := parseAddr(hop)
			if !ok {
				return client, true
			}
			client = a
			if !k.isTrusted(a) {
				return a, true
			}
		}
	}
	return client, true
}

// forwardedFor parses one line of a Forwarded header (RFC 7239, section 4)
// and returns the for= value of each of its elements, in order ("" for an
// element without one). It reports false if the line is malformed, so that
// a client cannot hide a proxy's element inside a quoted string it left
// open.
func forwardedFor(line string) ([]string, bool) {
	var fors []string
	i, elem, hasElem := 0, "", false
	skipOWS := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		if i == len(line) {
			break
		}
		if line[i] == ',' { // an empty list element
			i++
			continue
		}
		// name "=" value
		start := i
		for i < len(line) && isTchar(line[i]) {
			i++
		}
		name := line[start:i]
		if name == "" || i == len(line) || line[i] != '=' {
			return nil, false
		}
		i++
		var value string
		if i < len(line) && line[i] == '"' {
			var b strings.Builder
			i++
			for {
				if i == len(line) {
					return nil, false // unterminated
				}
				c := line[i]
				i++
				if c == '"' {
					break
				}
				if c == '\\' {
					if i == len(line) {
						return nil, false
					}
					c = line[i]
					i++
				}
				b.WriteByte(c)
			}
			value = b.String()
		} else {
			start := i
			for i < len(line) && isTchar(line[i]) {
				i++
			}
			value = line[start:i]
		}
		if strings.EqualFold(name, "for") {
			elem = value
		}
		hasElem = true
		skipOWS()
		if i == len(line) {
			break
		}
		switch line[i] {
		case ';':
			i++
		case ',':
			i++
			fors = append(fors, elem)
			elem, hasElem = "", false
		default:
			return nil, false
		}
	}
	if hasElem {
		fors = append(fors, elem)
	}
	return fors, true
}

// isTchar reports whether c may appear in an HTTP token (RFC 9110).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ClientKey returns [IPKey]'s key as a function that cannot fail, for APIs
// that take a func(*http.Request) string, such as magiclink's
// Options.ClientKey: where IPKey's KeyFunc fails (RemoteAddr holds no IP
// address, as with a Unix socket) it returns RemoteAddr as it is. It
// panics, as IPKey does, for invalid options.
func ClientKey(opts IPKeyOptions) func(*http.Request) string {
	key := IPKey(opts)
	return func(r *http.Request) string {
		k, err := key(r)
		if err != nil {
			return r.RemoteAddr
		}
		return k
	}
}

// ParseTrustedProxies parses a list of networks for
// [IPKeyOptions].TrustedProxies, as a configuration setting such as
// TRUSTED_PROXIES holds it: CIDR prefixes or single addresses, separated by
// commas and/or white space, such as "10.0.0.0/8, 192.168.1.7 fd00::/8".
// An address stands for itself alone (/32 or /128). An empty list is nil:
// no proxy is trusted. The error names the first entry that is neither.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	out, err := netlist.Parse(s, false)
	var e *netlist.EntryError
	if errors.As(err, &e) {
		if e.Network {
			return nil, fmt.Errorf("ratelimit: trusted proxy %.64q is not a network such as 10.0.0.0/8: %w", e.Entry, e.Err)
		}
		return nil, fmt.Errorf("ratelimit: trusted proxy %.64q is not an address or a network such as 10.0.0.0/8", e.Entry)
	}
	for i, p := range out {
		out[i] = p.Masked()
	}
	return out, nil
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
