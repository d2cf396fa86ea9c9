// Package netlist parses a list of IP networks as a configuration setting,
// a command-line flag or a form holds it: the shared reading of
// apikey.ParseCIDRs and ratelimit.ParseTrustedProxies, which add their own
// rules (masking, limits) and error wording.
package netlist

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// errZone is the [EntryError.Err] of an address with an IPv6 zone where
// zones are refused.
var errZone = errors.New("netlist: an address with a zone")

// An EntryError names the first entry of a list that is neither a CIDR
// prefix nor an IP address.
type EntryError struct {
	// Entry is the entry as written.
	Entry string
	// Network is true when the entry holds a "/", and so was read as a
	// CIDR prefix; false when it was read as an address.
	Network bool
	// Err is why netip refused the entry, or an error saying the address
	// has a zone that was not to be dropped.
	Err error
}

// Error returns the entry, quoted, and why it was refused.
func (e *EntryError) Error() string {
	return "netlist: entry " + strconv.Quote(e.Entry) + ": " + e.Err.Error()
}

// Unwrap returns [EntryError.Err].
func (e *EntryError) Unwrap() error { return e.Err }

// Parse splits s at commas and white space and reads each entry as a
// CIDR prefix if it holds a "/" ("10.0.0.0/8", "2001:db8::/48"), and as an
// address otherwise, which stands for itself alone (a /32 or /128
// prefix). Prefixes are returned as written: not masked, and IPv4-mapped
// IPv6 prefixes not unmapped. A list of no entries gives nil.
//
// An address with an IPv6 zone ("fe80::1%eth0") stands for the address
// without its zone if dropZones is true, and is refused otherwise; a
// prefix with a zone is always refused, as [netip.ParsePrefix] does. The
// error for the first entry refused is an [*EntryError].
func Parse(s string, dropZones bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, isSeparator) {
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, &EntryError{Entry: f, Network: true, Err: err}
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err == nil && a.Zone() != "" && !dropZones {
			err = errZone
		}
		if err != nil {
			return nil, &EntryError{Entry: f, Err: err}
		}
		out = append(out, netip.PrefixFrom(a.WithZone(""), a.BitLen()))
	}
	return out, nil
}

func isSeparator(r rune) bool {
	return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
}
