// Package loopback tells whether a host name or address stays on this
// machine, for the rules that differ on loopback: browsers keep Secure
// cookies over plain http there, dev billing may serve there only, and
// SMTP credentials may travel unencrypted only there.
package loopback

import (
	"net"
	"net/url"
	"strings"
)

// Host reports whether host (a name or an IP address, without port or
// brackets) is on the loopback interface: "localhost", a name under
// ".localhost" (RFC 6761), or an address in 127.0.0.0/8 or ::1.
func Host(host string) bool {
	h := strings.ToLower(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// URL reports whether the URL's host is on the loopback interface; an
// unparsable URL is not.
func URL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && Host(u.Hostname())
}
