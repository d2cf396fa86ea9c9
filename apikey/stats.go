package apikey

import (
	"errors"
	"sync/atomic"
)

// VerifierStats is a snapshot of a [Verifier]'s counters since it was
// created.
type VerifierStats struct {
	Verified    uint64 // keys accepted
	Malformed   uint64 // refused without a lookup: format, checksum, prefix
	Invalid     uint64 // unknown id or wrong secret
	Revoked     uint64
	Expired     uint64
	Inactive    uint64
	Unavailable uint64 // store failures: refused with 503
	// AddressRefused counts valid keys refused because the request came
	// from outside their AllowedCIDRs.
	AddressRefused uint64

	CacheHits   uint64 // answered from memory (known keys and unknown ids)
	CacheMisses uint64
	Lookups     uint64 // store queries made (misses share them)
	// Rechecks counts cached keys read again because a presented secret
	// did not match them (the key may have been rolled elsewhere); at most
	// one per key per NegativeTTL.
	Rechecks   uint64
	CachedKeys int // known keys in the cache now
	CachedIDs  int // unknown ids remembered now

	TouchesWritten uint64 // last-use times written to the store
	TouchErrors    uint64 // failed batch writes
}

// Stats returns a snapshot of the Verifier's counters. It never contains
// secrets.
func (v *Verifier) Stats() VerifierStats {
	known, unknown := v.cache.len()
	c := &v.stats
	return VerifierStats{
		Verified: c.verified.Load(), Malformed: c.malformed.Load(), Invalid: c.invalid.Load(),
		Revoked: c.revoked.Load(), Expired: c.expired.Load(), Inactive: c.inactive.Load(),
		Unavailable: c.unavailable.Load(), AddressRefused: c.addressRefused.Load(),
		CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(), Lookups: c.lookups.Load(),
		Rechecks:   c.rechecks.Load(),
		CachedKeys: known, CachedIDs: unknown,
		TouchesWritten: c.touchesWritten.Load(), TouchErrors: c.touchErrors.Load(),
	}
}

type verifierCounters struct {
	verified, malformed, invalid, revoked, expired, inactive, unavailable atomic.Uint64
	cacheHits, cacheMisses, lookups, rechecks                             atomic.Uint64
	touchesWritten, touchErrors, addressRefused                           atomic.Uint64
}

func (c *verifierCounters) count(err error) {
	switch {
	case errors.Is(err, ErrRevoked):
		c.revoked.Add(1)
	case errors.Is(err, ErrExpired):
		c.expired.Add(1)
	case errors.Is(err, ErrInactive):
		c.inactive.Add(1)
	}
}
