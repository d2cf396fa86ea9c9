package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/apikit/apikit/ratelimit"
)

func request(remoteAddr string, header ...string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = remoteAddr
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestIPKey(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	trusting := ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: proxies})
	realIP := ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: proxies, ProxyHeader: "x-real-ip"})
	fwd := ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: proxies, ProxyHeader: ratelimit.HeaderForwarded})
	tests := []struct {
		name string
		key  ratelimit.KeyFunc
		r    *http.Request
		want string
	}{
		{"DirectIPv4", trusting, request("203.0.113.7:5555"), "203.0.113.7"},
		{"DirectIPv6ByDefaultA64", trusting, request("[2001:db8:1:2:3:4:5:6]:443"), "2001:db8:1:2::/64"},
		{"IPv4MappedIsIPv4", trusting, request("[::ffff:203.0.113.7]:80"), "203.0.113.7"},
		{"ZoneDropped", trusting, request("[fe80::1%eth0]:80"), "fe80::/64"},
		{"NoPort", trusting, request("203.0.113.7"), "203.0.113.7"},

		// Spoofing: headers from an untrusted peer are ignored.
		{"SpoofedXFFFromClient", trusting, request("203.0.113.7:1", "X-Forwarded-For", "198.51.100.1"), "203.0.113.7"},
		{"SpoofedXRealIPFromClient", trusting, request("203.0.113.7:1", "X-Real-IP", "198.51.100.1"), "203.0.113.7"},
		{"NoTrustNoHeaders", ratelimit.IPKey(ratelimit.IPKeyOptions{}), request("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1"), "10.0.0.1"},

		// Behind trusted proxies.
		{"ProxyXFF", trusting, request("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1"), "198.51.100.1"},
		{"ProxyXRealIP", realIP, request("10.0.0.1:1", "X-Real-IP", "198.51.100.1"), "198.51.100.1"},
		{"XRealIPNotReadByDefault", trusting, request("10.0.0.1:1", "X-Real-IP", "198.51.100.2"), "10.0.0.1"},
		// A proxy that sets X-Real-IP passes the client's own
		// X-Forwarded-For through: it must not be read.
		{"ForgedXFFBehindXRealIPProxy", realIP, request("10.0.0.1:1", "X-Forwarded-For", "1.1.1.1", "X-Real-IP", "198.51.100.1"), "198.51.100.1"},
		{"XRealIPFromUntrustedPeer", realIP, request("203.0.113.7:1", "X-Real-IP", "198.51.100.1"), "203.0.113.7"},
		{"XRealIPWithPort", realIP, request("10.0.0.1:1", "X-Real-IP", "198.51.100.1:80"), "198.51.100.1"},

		// RFC 7239 Forwarded.
		{"Forwarded", fwd, request("10.0.0.1:1", "Forwarded", "for=198.51.100.1;proto=https;by=10.0.0.1"), "198.51.100.1"},
		{"ForwardedQuotedIPv6WithPort", fwd, request("10.0.0.1:1", "Forwarded", `for="[2001:db8:cafe::17]:4711"`), "2001:db8:cafe::/64"},
		{"ForwardedChain", fwd, request("10.0.0.1:1", "Forwarded", "for=1.1.1.1, For=198.51.100.1;proto=http, for=10.2.2.2"), "198.51.100.1"},
		{"ForwardedLines", fwd, request("10.0.0.1:1", "Forwarded", "for=1.1.1.1, for=198.51.100.1", "Forwarded", "for=10.3.3.3"), "198.51.100.1"},
		{"ForwardedUnknownStops", fwd, request("10.0.0.1:1", "Forwarded", "for=198.51.100.1, for=unknown, for=10.7.7.7"), "10.7.7.7"},
		{"ForwardedObfuscated", fwd, request("10.0.0.1:1", "Forwarded", "for=_hidden"), "10.0.0.1"},
		{"ForwardedWithoutFor", fwd, request("10.0.0.1:1", "Forwarded", "proto=https"), "10.0.0.1"},
		{"ForwardedQuotedComma", fwd, request("10.0.0.1:1", "Forwarded", `for=198.51.100.1;x="a,b", for=10.2.2.2`), "198.51.100.1"},
		// A client's unterminated quote would swallow the proxy's element:
		// the line is malformed, and the client is the proxy.
		{"ForwardedOpenQuoteFromClient", fwd, request("10.0.0.1:1", "Forwarded", `for="1.1.1.1, for=198.51.100.1`), "10.0.0.1"},
		{"ForwardedMalformedLeftLine", fwd, request("10.0.0.1:1", "Forwarded", `for=1.1.1.1;;=`, "Forwarded", "for=198.51.100.1"), "198.51.100.1"},
		{"ForwardedFromUntrustedPeer", fwd, request("203.0.113.7:1", "Forwarded", "for=198.51.100.1"), "203.0.113.7"},
		{"ForwardedIgnoresXFF", fwd, request("10.0.0.1:1", "X-Forwarded-For", "1.1.1.1", "Forwarded", "for=198.51.100.1"), "198.51.100.1"},
		{"XFFIgnoresForwarded", trusting, request("10.0.0.1:1", "Forwarded", "for=1.1.1.1"), "10.0.0.1"},
		{"ProxyChainSkipsTrustedHops", trusting, request("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1, 10.1.1.1, 10.2.2.2"), "198.51.100.1"},
		{"ClientPrependedForgery", trusting, request("10.0.0.1:1", "X-Forwarded-For", "1.1.1.1, 198.51.100.1"), "198.51.100.1"},
		{"ClientForgedTrustedAddress", trusting, request("10.0.0.1:1", "X-Forwarded-For", "10.9.9.9, 198.51.100.1"), "198.51.100.1"},
		{"SeveralHeaderLines", trusting, request("10.0.0.1:1", "X-Forwarded-For", "1.1.1.1, 198.51.100.1", "X-Forwarded-For", "10.3.3.3"), "198.51.100.1"},
		{"AllTrustedTakesLeftmost", trusting, request("10.0.0.1:1", "X-Forwarded-For", "10.5.5.5, 10.6.6.6"), "10.5.5.5"},
		{"GarbageStopsAtLastTrustedHop", trusting, request("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1, garbage, 10.7.7.7"), "10.7.7.7"},
		{"GarbageFromPeer", trusting, request("10.0.0.1:1", "X-Forwarded-For", "not-an-ip"), "10.0.0.1"},
		{"EmptyElementsSkipped", trusting, request("10.0.0.1:1", "X-Forwarded-For", " , 198.51.100.1 ,, "), "198.51.100.1"},
		{"EntryWithPort", trusting, request("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1:4711"), "198.51.100.1"},
		{"BracketedIPv6", trusting, request("10.0.0.1:1", "X-Forwarded-For", "[2001:db8:5::1]"), "2001:db8:5::/64"},
		{"BracketedIPv6WithPort", trusting, request("10.0.0.1:1", "X-Forwarded-For", "[2001:db8:5::1]:80"), "2001:db8:5::/64"},
		{"BadXRealIPIgnored", realIP, request("10.0.0.1:1", "X-Real-IP", "nope"), "10.0.0.1"},
		{"IPv6Proxy", trusting, request("[2001:db8:ffff::9]:1", "X-Forwarded-For", "2001:db8:1:2::99"), "2001:db8:1:2::/64"},
		{"MappedProxyAddress", trusting, request("[::ffff:10.0.0.1]:1", "X-Forwarded-For", "198.51.100.1"), "198.51.100.1"},

		// Prefix lengths.
		{"IPv6Full", ratelimit.IPKey(ratelimit.IPKeyOptions{IPv6Bits: 128}), request("[2001:db8::1]:1"), "2001:db8::1"},
		{"IPv6By48", ratelimit.IPKey(ratelimit.IPKeyOptions{IPv6Bits: 48}), request("[2001:db8:1:2::1]:1"), "2001:db8:1::/48"},
		{"IPv4By24", ratelimit.IPKey(ratelimit.IPKeyOptions{IPv4Bits: 24}), request("203.0.113.7:1"), "203.0.113.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key(tt.r)
			if err != nil || got != tt.want {
				t.Errorf("key = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestIPKeyMappedTrustedPrefix(t *testing.T) {
	key := ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}})
	if got, _ := key(request("10.1.2.3:1", "X-Forwarded-For", "198.51.100.1")); got != "198.51.100.1" {
		t.Errorf("key = %q; an IPv4-mapped trusted prefix should trust 10.0.0.0/8", got)
	}
}

func TestIPKeyWithoutAddress(t *testing.T) {
	key := ratelimit.IPKey(ratelimit.IPKeyOptions{})
	for _, addr := range []string{"", "@", "/run/app.sock", "example.com:80"} {
		if got, err := key(request(addr)); err == nil || !strings.HasPrefix(err.Error(), "ratelimit: ") {
			t.Errorf("RemoteAddr %q: %q, %v; want an error", addr, got, err)
		}
	}
}

func TestIPKeyPanicsOnBadOptions(t *testing.T) {
	for _, opts := range []ratelimit.IPKeyOptions{
		{IPv4Bits: 33}, {IPv6Bits: 129}, {IPv6Bits: -1},
		{TrustedProxies: []netip.Prefix{{}}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "ratelimit: ") {
					t.Errorf("IPKey(%+v) recovered %v; want a ratelimit: panic", opts, r)
				}
			}()
			ratelimit.IPKey(opts)
		}()
	}
}

// FuzzIPKey feeds untrusted header values to IPKey. Whatever they hold, the
// key must be an address or a network, and a peer that is not a trusted
// proxy must be keyed by its own address: headers cannot move it to
// another bucket.
func FuzzIPKey(f *testing.F) {
	f.Add("10.0.0.1:1234", "198.51.100.1, 10.1.1.1", "198.51.100.2", uint8(0))
	f.Add("203.0.113.7:1", "1.1.1.1", "2.2.2.2", uint8(1))
	f.Add("[2001:db8::1]:443", "[2001:db8:5::1]:80, garbage", "", uint8(2))
	f.Add("10.0.0.1:1", " , ,,", "::ffff:1.2.3.4", uint8(2))
	f.Add("10.0.0.1:1", "fe80::1%eth0, 10.0.0.2", "[::1]", uint8(0))
	f.Add("[::ffff:10.0.0.1]:1", "10.0.0.3,10.0.0.4", "x", uint8(1))
	f.Add("10.0.0.1:1", `for="[2001:db8::1]:80";proto=https, for=10.0.0.2`, "", uint8(1))
	f.Add("10.0.0.1:1", `for="1.1.1.1\", for=2.2.2.2`, "", uint8(1))
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	keys := []ratelimit.KeyFunc{
		ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: trusted}),
		ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, ProxyHeader: ratelimit.HeaderForwarded}),
		ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, ProxyHeader: ratelimit.HeaderXRealIP}),
	}
	f.Fuzz(func(t *testing.T, remoteAddr, list, realIP string, which uint8) {
		key := keys[int(which)%len(keys)]
		r := request(remoteAddr, "X-Forwarded-For", list, "Forwarded", list, "X-Real-IP", realIP)
		k, err := key(r)
		if err != nil {
			return
		}
		if _, err := netip.ParseAddr(k); err != nil {
			if _, err := netip.ParsePrefix(k); err != nil {
				t.Fatalf("key %q is neither an address nor a network", k)
			}
		}
		peerOnly, err := key(request(remoteAddr))
		if err != nil {
			t.Fatalf("RemoteAddr %q gave a key with headers but not without: %v", remoteAddr, err)
		}
		ap, perr := netip.ParseAddrPort(remoteAddr)
		if perr == nil && !netip.MustParsePrefix("10.0.0.0/8").Contains(ap.Addr().Unmap()) && k != peerOnly {
			t.Fatalf("untrusted peer %q keyed %q by its headers, not %q", remoteAddr, k, peerOnly)
		}
	})
}

func TestIPKeyProxyHeaderMustBeKnown(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "ratelimit: ") {
			t.Errorf("recovered %v; want a ratelimit: panic", r)
		}
	}()
	ratelimit.IPKey(ratelimit.IPKeyOptions{ProxyHeader: "X-Client-IP"})
}

func TestClientKey(t *testing.T) {
	key := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if got := key(request("10.0.0.1:1", "X-Forwarded-For", "1.1.1.1, 198.51.100.1")); got != "198.51.100.1" {
		t.Errorf("behind a trusted proxy: %q", got)
	}
	if got := key(request("@")); got != "@" {
		t.Errorf("Unix socket: %q; want RemoteAddr as it is", got)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		in   string
		want string // the prefixes joined by " ", or "error"
	}{
		{"", ""},
		{"  ", ""},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.0/8, 192.168.1.7 fd00::/8,,\t2001:db8::1", "10.0.0.0/8 192.168.1.7/32 fd00::/8 2001:db8::1/128"},
		{"10.1.2.3/8", "10.0.0.0/8"}, // masked
		{"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"},
		{"10.0.0.0/33", "error"},
		{"10.0.0.0/8;rm -rf", "error"},
		{"example.com", "error"},
		{"fe80::1%eth0", "error"},
		{"10.0.0.0/", "error"},
	}
	for _, tt := range tests {
		got, err := ratelimit.ParseTrustedProxies(tt.in)
		if tt.want == "error" {
			if err == nil || !strings.HasPrefix(err.Error(), "ratelimit: trusted proxy ") {
				t.Errorf("ParseTrustedProxies(%q) = %v, %v; want an error naming the entry", tt.in, got, err)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || strings.Join(s, " ") != tt.want {
			t.Errorf("ParseTrustedProxies(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// FuzzParseTrustedProxies: whatever a setting holds, the parser returns
// valid, masked prefixes or an error, and never panics.
func FuzzParseTrustedProxies(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8, 192.168.1.7 fd00::/8", "::ffff:1.2.3.4/120", "1.2.3.4/99", "fe80::1%x/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ratelimit.ParseTrustedProxies(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("ParseTrustedProxies(%q) returned %v", s, p)
			}
			ratelimit.IPKey(ratelimit.IPKeyOptions{TrustedProxies: ps}) // must not panic
		}
	})
}
