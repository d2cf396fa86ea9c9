// Package emailaddr validates and normalises the email addresses people type
// into sign-up and sign-in forms, shared by packages magiclink and billing.
//
// The rules are deliberately stricter than RFC 5322 allows: an address is a
// dot-atom local part and a DNS host name, in ASCII only. Quoted local
// parts, comments, display names, IP-literal domains and internationalised
// addresses are refused — they are rare in practice and are where header
// injection and look-alike ("ａdmin@example.com", Cyrillic "а") attacks
// live. Internationalised domains must be given in their "xn--" form.
package emailaddr

import (
	"errors"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Length limits from RFC 5321 section 4.5.3.1.
const (
	MaxLen      = 254
	MaxLocalLen = 64
	maxLabelLen = 63
)

// ErrInvalid is wrapped by every error [Normalize] returns.
var ErrInvalid = errors.New("invalid email address")

// Error explains why an address was refused, in words fit to show the user.
type Error struct{ Reason string }

func (e *Error) Error() string        { return ErrInvalid.Error() + ": " + e.Reason }
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(reason string) error { return &Error{Reason: reason} }

// Normalize checks an address and returns it trimmed and lowercased, the
// form in which apikit stores and compares addresses.
func Normalize(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", invalid("the address is empty")
	case len(s) > MaxLen:
		return "", invalid("the address is longer than 254 characters")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7E {
			if c == '\r' || c == '\n' {
				return "", invalid("the address contains a line break")
			}
			return "", invalid("the address may contain only ASCII letters, digits and punctuation, without spaces")
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", invalid("the address has no @")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return "", err
	}
	if err := checkDomain(domain); err != nil {
		return "", err
	}
	// Belt and braces: the standard library's RFC 5322 parser must agree
	// that this is a bare address and nothing more.
	if a, err := mail.ParseAddress(s); err != nil || a.Name != "" || a.Address != s {
		return "", invalid("the address is not of the form name@example.com")
	}
	return strings.ToLower(s), nil
}

// atext are the characters RFC 5322 allows in a dot-atom, besides letters
// and digits.
const atext = "!#$%&'*+-/=?^_`{|}~"

func checkLocal(local string) error {
	switch {
	case local == "":
		return invalid("the part before the @ is empty")
	case len(local) > MaxLocalLen:
		return invalid("the part before the @ is longer than 64 characters")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return invalid("the part before the @ has a misplaced dot")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; !isAlnum(c) && c != '.' && strings.IndexByte(atext, c) < 0 {
			return invalid("the part before the @ contains " + quoteChar(c))
		}
	}
	return nil
}

func checkDomain(domain string) error {
	if domain == "" {
		return invalid("the domain after the @ is empty")
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return invalid("the domain needs a dot, as in example.com")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return invalid("the domain has a misplaced dot")
		case len(l) > maxLabelLen:
			return invalid("a part of the domain is longer than 63 characters")
		case l[0] == '-' || l[len(l)-1] == '-':
			return invalid("a part of the domain starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' {
				return invalid("the domain contains " + quoteChar(c))
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return invalid("the domain must be a name, not an IP address")
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func quoteChar(c byte) string { return "'" + string(c) + "'" }

// Mask shows an address the way pages and notices tell a reader where to
// look without spelling it out to whoever else sees it: the first
// character of the local part, then "•••", then the domain
// ("a•••@example.org"); "•••" for anything without a local part.
func Mask(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return "•••"
	}
	first, _ := utf8.DecodeRuneInString(email)
	if first == utf8.RuneError {
		first = '•'
	}
	return string(first) + "•••" + email[at:]
}
