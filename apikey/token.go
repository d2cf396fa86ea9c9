package apikey

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"log/slog"
)

// Lengths of the parts of a token. See [Token].
const (
	IDLen     = 12 // base62 characters of the public key id
	SecretLen = 32 // base62 characters of the secret (about 190 bits)
	CheckLen  = 6  // base62 characters of the CRC32 checksum
	// MaxPrefixLen bounds the length of a prefix such as "sk_live".
	MaxPrefixLen = 32
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// tailLen is the length of "_<id>_<secret><check>".
const tailLen = 1 + IDLen + 1 + SecretLen + CheckLen

// Token is an API key as presented by a client:
//
//	<prefix>_<id>_<secret><check>
//	fav_live_4tQ2x9LmZpB7_<32 secret chars><6 check chars>
//
// The prefix (which may contain underscores, as in "sk_live") lets people
// and secret scanners recognise a key and tell live keys from test keys. The
// id is the public part, stored in plain text and used for the one lookup.
// The secret is random and only its hash is stored. The check is a CRC32 of
// everything before it, so that typos and garbage are rejected without a
// store lookup; it is public and is no protection against forgery.
//
// A Token's String, GoString and LogValue methods show only the prefix and
// id, so a Token can be printed and logged safely; [Token.Reveal] returns the
// full token. The zero Token is invalid.
type Token struct {
	Prefix string
	ID     string
	secret string
}

// Reveal returns the full token, to be shown to its owner exactly once.
func (t Token) Reveal() string {
	if t.ID == "" {
		return ""
	}
	body := t.Prefix + "_" + t.ID + "_" + t.secret
	return body + checksum(body)
}

// String returns the token with its secret redacted:
// "fav_live_4tQ2x9LmZpB7_…".
func (t Token) String() string {
	return t.Prefix + "_" + t.ID + "_…"
}

// GoString redacts the secret from %#v as well.
func (t Token) GoString() string {
	return fmt.Sprintf("apikey.Token{Prefix:%q, ID:%q}", t.Prefix, t.ID)
}

// LogValue implements [slog.LogValuer]: only the prefix and id are logged.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("prefix", t.Prefix), slog.String("id", t.ID))
}

// Generate returns a new random token with the given prefix. The prefix must
// satisfy [ValidPrefix].
func Generate(prefix string) (Token, error) {
	if err := ValidPrefix(prefix); err != nil {
		return Token{}, err
	}
	return Token{Prefix: prefix, ID: randomBase62(IDLen), secret: randomBase62(SecretLen)}, nil
}

// newSecret returns t with a fresh random secret.
func (t Token) newSecret() Token {
	t.secret = randomBase62(SecretLen)
	return t
}

// ValidPrefix reports whether p can be a token prefix: 1 to [MaxPrefixLen]
// ASCII letters, digits and underscores, starting with a letter and not
// ending with an underscore, such as "fav", "sk_live" or "fav_test".
func ValidPrefix(p string) error {
	if p == "" || len(p) > MaxPrefixLen {
		return fmt.Errorf("apikey: prefix %q must be 1 to %d characters", p, MaxPrefixLen)
	}
	if !isLetter(p[0]) || p[len(p)-1] == '_' {
		return fmt.Errorf("apikey: prefix %q must start with a letter and not end with '_'", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !isLetter(c) && !isDigit(c) && c != '_' {
			return fmt.Errorf("apikey: prefix %q may contain only letters, digits and '_'", p)
		}
	}
	return nil
}

// Parse checks the format and checksum of a token without any store lookup.
// It returns an error wrapping [ErrMalformed] for a wrong length, a character
// outside the alphabet, an invalid prefix or a wrong checksum.
func Parse(s string) (Token, error) {
	if len(s) < tailLen+1 || len(s) > tailLen+MaxPrefixLen {
		return Token{}, malformed("wrong length")
	}
	p := len(s) - tailLen // index of the '_' before the id
	prefix, id := s[:p], s[p+1:p+1+IDLen]
	secret, check := s[p+2+IDLen:len(s)-CheckLen], s[len(s)-CheckLen:]
	if s[p] != '_' || s[p+1+IDLen] != '_' {
		return Token{}, malformed("missing separator")
	}
	if ValidPrefix(prefix) != nil {
		return Token{}, malformed("invalid prefix")
	}
	if !isBase62(id) || !isBase62(secret) || !isBase62(check) {
		return Token{}, malformed("character outside the base62 alphabet")
	}
	if !checksumMatches(s[:len(s)-CheckLen], check) {
		return Token{}, malformed("checksum mismatch")
	}
	return Token{Prefix: prefix, ID: id, secret: secret}, nil
}

func malformed(why string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, why)
}

// checksum returns the CRC32 (IEEE) of s as CheckLen base62 digits.
func checksum(s string) string {
	var b [CheckLen]byte
	encodeCheck(&b, crcString(s))
	return string(b[:])
}

func checksumMatches(body, check string) bool {
	var b [CheckLen]byte
	encodeCheck(&b, crcString(body))
	return string(b[:]) == check
}

// crcString is crc32.ChecksumIEEE over a string without converting it to a
// []byte, which would allocate on every verification.
func crcString(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

func encodeCheck(b *[CheckLen]byte, n uint32) {
	for i := CheckLen - 1; i >= 0; i-- {
		b[i] = base62[n%62]
		n /= 62
	}
}

// randomBase62 returns n characters drawn uniformly from the base62
// alphabet using crypto/rand (rejection sampling avoids modulo bias).
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never returns an error since Go 1.24
		for _, c := range buf {
			if c < 248 { // 248 = 4*62: accept only values that map uniformly
				out = append(out, base62[c%62])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
