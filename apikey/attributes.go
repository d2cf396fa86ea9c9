package apikey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/apikit/apikit/internal/netlist"
)

// Limits on a key's attributes, checked by [Manager.Issue].
const (
	// MaxMetadataLen is the largest [IssueOptions.Metadata], in bytes of
	// compact JSON.
	MaxMetadataLen = 1024
	// MaxTags is the most tags a key may carry.
	MaxTags = 16
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 64
	// MaxCIDRs is the most networks a key may be restricted to.
	MaxCIDRs = 32
)

// Environments a key's prefix can name, as returned by [Key.Environment].
const (
	EnvLive = "live"
	EnvTest = "test"
)

// AttributeStore is a [Store] that keeps a key's attributes: CreateKey
// stores [Key.Metadata], [Key.Tags] and [Key.AllowedCIDRs], and Key and
// KeysByUser return them. [Manager.Issue] refuses to issue a key with
// attributes into a store that does not implement it (the attributes would
// be dropped, and a key meant to be restricted to some networks would work
// from everywhere). The conformance test apikeytest.TestKeyAttributes
// checks an implementation.
type AttributeStore interface {
	Store
	// StoresKeyAttributes does nothing: implementing it is the store's
	// promise that it keeps the attributes.
	StoresKeyAttributes()
}

// Environment returns the environment the key's prefix names: [EnvLive]
// for a prefix ending in "_live" (such as "fav_live"), [EnvTest] for one
// ending in "_test", and "" for any other. The environment is part of the
// token, so people and secret scanners can tell it too; it is set at issue
// time ([IssueOptions.Environment]) and never changes.
func (k Key) Environment() string { return environment(k.Prefix) }

func environment(prefix string) string {
	switch {
	case strings.HasSuffix(prefix, "_"+EnvLive):
		return EnvLive
	case strings.HasSuffix(prefix, "_"+EnvTest):
		return EnvTest
	}
	return ""
}

// prefixFor returns the prefix of a key for environment env: base with its
// environment suffix, if any, replaced.
func prefixFor(base, env string) (string, error) {
	switch env {
	case "":
		return base, nil
	case EnvLive, EnvTest:
	default:
		return "", fmt.Errorf("%w: environment %q is neither %q nor %q", ErrInvalidOptions, env, EnvLive, EnvTest)
	}
	if cur := environment(base); cur != "" {
		base = strings.TrimSuffix(base, "_"+cur)
	}
	return base + "_" + env, nil
}

// AllowsAddr reports whether a request from addr may use the key: true if
// the key has no AllowedCIDRs, or if addr (IPv4-mapped IPv6 addresses are
// treated as IPv4) is in one of them. An invalid addr is allowed only by a
// key without AllowedCIDRs.
func (k Key) AllowsAddr(addr netip.Addr) bool { return allows(k.AllowedCIDRs, addr) }

// AllowsAddr is [Key.AllowsAddr] for the principal's key.
func (p Principal) AllowsAddr(addr netip.Addr) bool { return allows(p.AllowedCIDRs, addr) }

func allows(cidrs []netip.Prefix, addr netip.Addr) bool {
	if len(cidrs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, c := range cidrs {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}

// normalizeMetadata checks that m is a JSON object of at most
// MaxMetadataLen bytes once compacted, and returns it compacted (nil for an
// empty m or "null").
func normalizeMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(m)) == 0 || string(bytes.TrimSpace(m)) == "null" {
		return nil, nil
	}
	if len(m) > 8*MaxMetadataLen { // do not even parse something this large
		return nil, fmt.Errorf("%w: metadata larger than %d bytes", ErrInvalidOptions, MaxMetadataLen)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", ErrInvalidOptions)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m); err != nil {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", ErrInvalidOptions)
	}
	if buf.Len() > MaxMetadataLen {
		return nil, fmt.Errorf("%w: metadata larger than %d bytes", ErrInvalidOptions, MaxMetadataLen)
	}
	return json.RawMessage(buf.Bytes()), nil
}

// ValidTag reports whether t can be a key tag: 1 to [MaxTagLen] bytes of
// ASCII letters, digits and "_-.:/=", starting with a letter or digit, such
// as "team:billing" or "env=ci". The charset keeps tags safe to show,
// to put in URLs and to split on spaces or commas.
func ValidTag(t string) error {
	if t == "" || len(t) > MaxTagLen {
		return fmt.Errorf("%w: tag %.80q must be 1 to %d characters", ErrInvalidOptions, t, MaxTagLen)
	}
	if !isLetter(t[0]) && !isDigit(t[0]) {
		return fmt.Errorf("%w: tag %.80q must start with a letter or digit", ErrInvalidOptions, t)
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !isLetter(c) && !isDigit(c) && strings.IndexByte("_-.:/=", c) < 0 {
			return fmt.Errorf("%w: tag %.80q may contain only letters, digits and _-.:/=", ErrInvalidOptions, t)
		}
	}
	return nil
}

func normalizeTags(tags []string) ([]string, error) {
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("%w: more than %d tags", ErrInvalidOptions, MaxTags)
	}
	var out []string
	for _, t := range tags {
		if err := ValidTag(t); err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func normalizeCIDRs(cidrs []netip.Prefix) ([]netip.Prefix, error) {
	if len(cidrs) > MaxCIDRs {
		return nil, fmt.Errorf("%w: more than %d networks", ErrInvalidOptions, MaxCIDRs)
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if !c.IsValid() {
			return nil, fmt.Errorf("%w: network %v is not a valid CIDR prefix", ErrInvalidOptions, c)
		}
		if c.Addr().Is4In6() {
			c = netip.PrefixFrom(c.Addr().Unmap(), max(0, c.Bits()-96))
		}
		c = c.Masked()
		if c.Bits() == 0 {
			return nil, fmt.Errorf("%w: network %v allows every address; leave AllowedCIDRs empty instead", ErrInvalidOptions, c)
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseCIDRs parses a list of networks for [IssueOptions.AllowedCIDRs], as
// a form or a command-line flag holds it: CIDR prefixes or single
// addresses, separated by commas and/or white space, such as
// "203.0.113.0/24, 2001:db8::/48 198.51.100.7". A single address stands for
// itself (/32 or /128). The error names the first entry that is neither.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	out, err := netlist.Parse(s, true)
	var e *netlist.EntryError
	if errors.As(err, &e) {
		if e.Network {
			return nil, fmt.Errorf("%w: %.64q is not a network such as 203.0.113.0/24", ErrInvalidOptions, e.Entry)
		}
		return nil, fmt.Errorf("%w: %.64q is not an address or a network such as 203.0.113.0/24", ErrInvalidOptions, e.Entry)
	}
	return normalizeCIDRs(out)
}

type clientAddrKey struct{}

// WithClientAddr returns a copy of ctx that tells [Verifier.Verify],
// [Verifier.VerifyToken] and [Verifier.VerifySecret] the client's address,
// for checking keys restricted to networks ([Key.AllowedCIDRs]). Without
// it they refuse such keys with [ErrAddressNotAllowed] (they fail closed).
// [Middleware] does not need it: it asks [MiddlewareOptions.ClientIP].
func WithClientAddr(ctx context.Context, addr netip.Addr) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, addr)
}

// origin is where a verification comes from, for keys restricted to
// networks: a request and the function that finds its client address, or
// (r == nil) the address put in the context by WithClientAddr. It is read
// only for such keys, so that the others pay nothing for it.
type origin struct {
	r  *http.Request
	ip func(*http.Request) netip.Addr
}

func (o origin) addr(ctx context.Context) (netip.Addr, bool) {
	if o.r != nil {
		a := o.ip(o.r)
		return a.Unmap(), a.IsValid()
	}
	a, ok := ctx.Value(clientAddrKey{}).(netip.Addr)
	return a.Unmap(), ok && a.IsValid()
}

// errNoAttributes is why Issue refuses attributes for a plain Store.
var errNoAttributes = errors.New("the key store does not keep metadata, tags or networks (it does not implement apikey.AttributeStore)")
