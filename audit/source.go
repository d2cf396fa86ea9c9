package audit

import (
	"context"
	"net/http"
	"net/netip"
)

// Source is who sent a request and from where, carried in its context for
// [Log.Append].
type Source struct {
	Actor     Actor
	IP        netip.Addr
	UserAgent string
}

type sourceKey struct{}

// WithSource returns a copy of ctx carrying s.
func WithSource(ctx context.Context, s Source) context.Context {
	return context.WithValue(ctx, sourceKey{}, s)
}

// SourceFrom returns the Source in ctx, or the zero Source.
func SourceFrom(ctx context.Context) Source {
	s, _ := ctx.Value(sourceKey{}).(Source)
	return s
}

// WithActor returns a copy of ctx whose Source names actor, keeping its
// address and user agent: call it once the request's user is known (after
// the session middleware), or in a command-line tool with
// Actor{Kind: ActorOperator, ID: login}.
func WithActor(ctx context.Context, actor Actor) context.Context {
	s := SourceFrom(ctx)
	s.Actor = actor
	return WithSource(ctx, s)
}

// RequestSource returns the address and user agent of r. clientIP finds
// the client's address; pass one that trusts forwarding headers only from
// your proxies, such as one built on ratelimit.ClientKey:
//
//	trusted, _ := ratelimit.ParseTrustedProxies(os.Getenv("TRUSTED_PROXIES"))
//	key := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, IPv6Bits: 128})
//	clientIP := func(r *http.Request) netip.Addr { a, _ := netip.ParseAddr(key(r)); return a }
//
// A nil clientIP uses the TCP peer's address (r.RemoteAddr), which is right
// only when no proxy stands in front of the server.
func RequestSource(r *http.Request, clientIP func(*http.Request) netip.Addr) Source {
	var ip netip.Addr
	if clientIP != nil {
		ip = clientIP(r)
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip = ap.Addr()
	}
	// The user agent is bounded by Append, after redaction: cut here, a
	// token across the cut would be stored in part.
	return Source{IP: ip.Unmap(), UserAgent: r.UserAgent()}
}

// Middleware puts each request's [RequestSource] in its context, keeping
// an actor already there. Mount it outermost, so that every handler's
// events carry the client's address and user agent.
func Middleware(clientIP func(*http.Request) netip.Addr) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := RequestSource(r, clientIP)
			s.Actor = SourceFrom(r.Context()).Actor
			next.ServeHTTP(w, r.WithContext(WithSource(r.Context(), s)))
		})
	}
}
