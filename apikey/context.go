package apikey

import (
	"context"
)

type principalKey struct{}

// authInfo is what Middleware puts in the context: the principal, and how
// to refuse a request for it (used by RequireScopes).
type authInfo struct {
	p Principal
	m *refuser // nil when put by NewContext
}

// NewContext returns a copy of ctx carrying p, as [Middleware] does; tests
// of handlers can use it. [RequireScopes] refuses requests with such a
// context through [WriteError].
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, &authInfo{p: p})
}

// PrincipalFrom returns the principal that [Middleware] put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	info, ok := ctx.Value(principalKey{}).(*authInfo)
	if !ok {
		return Principal{}, false
	}
	return info.p, true
}
