// Package bcrypthash is an [apikey.Hasher] for API keys imported from
// systems that stored them as bcrypt hashes (as many tutorials do).
//
// bcrypt is a password hash: deliberately slow (tens of milliseconds per
// check at the default cost), which protects low-entropy passwords but buys
// nothing for apikit's 190-bit random secrets, and makes every cache miss
// cost that much CPU. Use it only to keep imported keys working; issue new
// keys with the default [apikey.SHA256Hasher].
package bcrypthash

import (
	"golang.org/x/crypto/bcrypt"
)

// Hasher hashes and checks secrets with bcrypt. The zero value uses
// bcrypt.DefaultCost. It is safe for concurrent use.
type Hasher struct {
	// Cost is the bcrypt cost of new hashes (default bcrypt.DefaultCost).
	Cost int
}

// Hash returns the bcrypt hash of secret.
func (h Hasher) Hash(secret string) ([]byte, error) {
	cost := h.Cost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	return bcrypt.GenerateFromPassword([]byte(secret), cost)
}

// Compare reports whether hash is a bcrypt hash of secret. bcrypt compares
// in constant time.
func (Hasher) Compare(hash []byte, secret string) bool {
	return bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil
}
