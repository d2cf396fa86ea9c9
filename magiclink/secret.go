package magiclink

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// secretLen is the number of random bytes in a login token and a session
// id; base64url without padding makes them 43 characters.
const secretLen = 32

var encodedSecretLen = base64.RawURLEncoding.EncodedLen(secretLen)

// newSecret returns 32 random bytes, base64url-encoded, and their SHA-256.
func newSecret() (string, []byte) {
	b := make([]byte, secretLen)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	enc := base64.RawURLEncoding.EncodeToString(b)
	return enc, hashSecret(enc)
}

// hashSecret returns the SHA-256 of an encoded secret, as stored.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// wellFormed reports whether s looks like a secret this package issued, so
// that garbage is refused without touching the store.
func wellFormed(s string) bool {
	if len(s) != encodedSecretLen {
		return false
	}
	// Every string of 43 base64url characters decodes (the encoding is
	// not strict about the last character's unused bits); checking the
	// alphabet allocates nothing, where decoding would.
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
