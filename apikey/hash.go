package apikey

import (
	"crypto/sha256"
	"crypto/subtle"
)

// A Hasher turns a key's secret into the hash kept in the [Store] and checks
// a presented secret against it. Implementations must be safe for
// concurrent use and compare in constant time.
//
// The default, [SHA256Hasher], suits apikit's secrets: they are 190 random bits,
// so a fast hash cannot be brute-forced, and verification stays cheap on
// every request. A slow password hash such as bcrypt (see package
// apikey/bcrypthash) is only for keys imported from systems that stored them
// that way.
type Hasher interface {
	Hash(secret string) ([]byte, error)
	Compare(hash []byte, secret string) bool
}

// SHA256Hasher is the default [Hasher]: the SHA-256 digest of the secret,
// compared in constant time. It has no state; use the zero value.
type SHA256Hasher struct{}

// Hash returns the SHA-256 digest of secret.
func (SHA256Hasher) Hash(secret string) ([]byte, error) {
	sum := sha256.Sum256([]byte(secret))
	return sum[:], nil
}

// Compare reports, in constant time, whether hash is the digest of secret.
func (SHA256Hasher) Compare(hash []byte, secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(hash, sum[:]) == 1
}
