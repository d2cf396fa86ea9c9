package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

func ExampleParseLimit() {
	for _, s := range []string{"100/min", "50/15m", "10/sec", "5/hour", "100/day", "100/min burst 20", "100/fortnight"} {
		l, err := ratelimit.ParseLimit(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-16s → %-16s one every %v, %d at once\n", s, l, l.Interval(), l.BurstSize())
	}
	// Output:
	// 100/min          → 100/min          one every 600ms, 100 at once
	// 50/15m           → 50/15min         one every 18s, 50 at once
	// 10/sec           → 10/s             one every 100ms, 10 at once
	// 5/hour           → 5/h              one every 12m0s, 5 at once
	// 100/day          → 100/d            one every 14m24s, 100 at once
	// 100/min burst 20 → 100/min burst 20 one every 600ms, 20 at once
	// ratelimit: invalid limit "100/fortnight": unknown period unit "fortnight"; units are s, m or min, h, d or day (want e.g. "100/min", "50/15m" or "100/min burst 20")
}

func ExampleMemory() {
	// A fixed clock, so that the output does not depend on timing.
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: func() time.Time { return now }})
	limit := ratelimit.MustParseLimit("3/min")
	ctx := context.Background()
	for range 4 {
		d, _ := limiter.Allow(ctx, "key-1", limit)
		fmt.Printf("allowed %-5v remaining %d, retry after %v, full again after %v\n", d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter)
	}
	now = now.Add(20 * time.Second)
	d, _ := limiter.Allow(ctx, "key-1", limit)
	fmt.Printf("20s later: allowed %v\n", d.Allowed)
	fmt.Printf("%+v\n", limiter.Stats())
	// Output:
	// allowed true  remaining 2, retry after 0s, full again after 20s
	// allowed true  remaining 1, retry after 0s, full again after 40s
	// allowed true  remaining 0, retry after 0s, full again after 1m0s
	// allowed false remaining 0, retry after 20s, full again after 1m0s
	// 20s later: allowed true
	// {Allowed:4 Limited:1 Errors:0 FailedOpen:0 Keys:1 Expired:0 Overflowed:0 Fallbacks:0}
}

// The seed application's limits: 100 requests a minute per API key, and
// 50 per 15 minutes for the whole API.
func ExampleMiddleware() {
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	perKey := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		Policy: "per-key",
		Limit:  ratelimit.MustParseLimit("100/min"),
		// In an application: the id of the API key that authenticated the
		// request, from the context.
		KeyFunc: func(r *http.Request) (string, error) { return r.Header.Get("X-Key-Id"), nil },
	})
	global := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		Policy:  "global",
		Limit:   ratelimit.MustParseLimit("50/15m"),
		KeyFunc: func(*http.Request) (string, error) { return "all", nil },
	})
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "[]") })
	h := perKey(global(api))

	for i := range 51 {
		r := httptest.NewRequest("GET", "/api/favorites", nil)
		r.Header.Set("X-Key-Id", fmt.Sprint("key-", i%2))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if i == 0 || i == 50 {
			fmt.Println(w.Code)
			for _, k := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After"} {
				fmt.Printf("%s: %q\n", k, w.Header().Values(k))
			}
			fmt.Print(w.Body)
		}
	}
	// Output:
	// 200
	// RateLimit-Policy: ["\"per-key\";q=100;w=60" "\"global\";q=50;w=900"]
	// RateLimit: ["\"per-key\";r=99;t=1" "\"global\";r=49;t=18"]
	// X-RateLimit-Limit: ["50"]
	// X-RateLimit-Remaining: ["49"]
	// Retry-After: []
	// []
	// 429
	// RateLimit-Policy: ["\"per-key\";q=100;w=60" "\"global\";q=50;w=900"]
	// RateLimit: ["\"per-key\";r=74;t=16" "\"global\";r=0;t=18"]
	// X-RateLimit-Limit: ["50"]
	// X-RateLimit-Remaining: ["0"]
	// Retry-After: ["18"]
	// {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Rate limit 50/15min exceeded; retry in 18 s.","code":"rate_limited"}
}

func ExampleIPKey() {
	key := ratelimit.IPKey(ratelimit.IPKeyOptions{
		// The load balancer's network: only its X-Forwarded-For is believed.
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	show := func(remoteAddr, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remoteAddr
		r.Header.Set("X-Forwarded-For", xff)
		k, _ := key(r)
		fmt.Println(k)
	}
	show("10.0.0.7:41000", "198.51.100.23")          // through the load balancer
	show("10.0.0.7:41000", "6.6.6.6, 198.51.100.23") // the client prepended a forgery
	show("203.0.113.9:5000", "198.51.100.23")        // direct: the header is ignored
	show("10.0.0.7:41000", "2001:db8:aa:bb:1:2:3:4") // IPv6: the /64
	// Output:
	// 198.51.100.23
	// 198.51.100.23
	// 203.0.113.9
	// 2001:db8:aa:bb::/64
}

// A TRUSTED_PROXIES setting, and a client key for APIs that take a
// func(*http.Request) string, such as magiclink.Options.ClientKey.
func ExampleClientKey() {
	proxies, err := ratelimit.ParseTrustedProxies("10.0.0.0/8, 192.168.1.7")
	if err != nil {
		fmt.Println(err)
		return
	}
	clientKey := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: proxies})
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = "192.168.1.7:41000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.23")
	fmt.Println(clientKey(r))

	_, err = ratelimit.ParseTrustedProxies("10.0.0.0/8, proxy.internal")
	fmt.Println(err)
	// Output:
	// 198.51.100.23
	// ratelimit: trusted proxy "proxy.internal" is not an address or a network such as 10.0.0.0/8
}

// Behind proxies that send RFC 7239 Forwarded headers.
func ExampleIPKeyOptions_forwarded() {
	key := ratelimit.IPKey(ratelimit.IPKeyOptions{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		ProxyHeader:    ratelimit.HeaderForwarded,
	})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.7:41000"
	r.Header.Set("Forwarded", `for=6.6.6.6, for="198.51.100.23:5000";proto=https`)
	k, _ := key(r)
	fmt.Println(k)
	// Output: 198.51.100.23
}

// Append writes a limit as String does, into a buffer of the caller's.
func ExampleLimit_Append() {
	var buf [32]byte
	b := ratelimit.MustParseLimit("100/min burst 20").Append(buf[:0])
	fmt.Println(string(b))
	// Output: 100/min burst 20
}
