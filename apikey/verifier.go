package apikey

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// VerifierOptions configures a [Verifier]. The zero value is a safe default.
type VerifierOptions struct {
	// CacheSize bounds how many verified keys are kept in memory
	// (default 10,000). A quarter as many unknown ids are remembered on
	// top, in their own budget.
	CacheSize int

	// CacheTTL is how long a key read from the store is served from memory
	// (default 30 seconds). It bounds how stale a key can be: a revocation,
	// roll or deactivation made through a [Manager] linked to this Verifier
	// takes effect at once, but one made elsewhere (another instance, or
	// directly in the database) takes effect here within CacheTTL. It is
	// also how long an already verified key keeps working while the store
	// is unreachable.
	CacheTTL time.Duration

	// FallbackTTL is how long a cached key is served while the Verifier
	// cannot count on hearing about changes made elsewhere: between
	// [Verifier.ShortenTTL] and [Verifier.RestoreTTL], and afterwards for
	// keys read before RestoreTTL (default 1 second, at most CacheTTL). An
	// invalidation bus (package invalidate) calls them when its
	// subscription is lost and re-established.
	FallbackTTL time.Duration

	// NegativeTTL is how long an id that is not in the store is remembered
	// as unknown (default 5 seconds), so that a flood of well-formed but
	// forged keys costs at most one store query per id per NegativeTTL.
	// It also bounds how often a wrong secret for a cached key makes the
	// Verifier read that key again (see CacheTTL).
	NegativeTTL time.Duration

	// LookupTimeout bounds one store query (default 5 seconds). The query
	// runs on the goroutine and under the context of the first caller to
	// miss; callers that joined it wait only as long as their own contexts
	// allow, and ask again if the first caller gives up.
	LookupTimeout time.Duration

	// Prefixes, if set, are the only token prefixes accepted, such as
	// []string{"fav_live"}; other tokens are malformed. A key stored with
	// another prefix is refused however it is presented, also without its
	// prefix ([Verifier.VerifySecret]). By default any valid prefix is
	// accepted, and a token's prefix must still match the stored key's.
	Prefixes []string

	// Hasher checks secrets against stored hashes (default
	// [SHA256Hasher]). It must be the Hasher the keys were issued with.
	Hasher Hasher

	// TouchInterval is how often last-use times are written to the store,
	// in one batch, off the request path (default 1 minute). A key's
	// LastUsedAt is therefore accurate to about TouchInterval.
	TouchInterval time.Duration

	// Now returns the current time (default time.Now).
	Now func() time.Time

	// Trace, if set, is called around each store query the Verifier makes:
	// the lookup of a key on a cache miss ("apikey.Key", with the context
	// of the caller that runs it: concurrent misses for one key share the
	// first caller's query) and the batched write of last-use times
	// ("apikey.TouchKeys"). The function it returns is called with the
	// query's error (nil on success; an unknown key is not an error). It
	// lets a tracer, such as OpenTelemetry's, time the store without this
	// package depending on one; the context it returns is the one the store
	// receives. Names carry no key id or secret. A cache hit calls nothing.
	Trace func(ctx context.Context, name string) (context.Context, func(error))

	// Logger receives store failures (default: discard).
	Logger *slog.Logger
}

// A Verifier checks API keys: parse, look up by id (through a bounded
// in-memory cache), compare the secret's hash in constant time, then check
// that the key is active, not revoked and not expired.
//
// A Verifier is safe for concurrent use. It runs one background goroutine
// that writes last-use times in batches; call [Verifier.Close] to flush
// them and stop it.
type Verifier struct {
	store  Store
	key    func(ctx context.Context, id string) (Key, bool, error) // the store's lookup for a miss
	opts   VerifierOptions
	cache  *cache
	logger *slog.Logger

	touchMu sync.Mutex
	touches map[string]time.Time // pending last-use times

	stop     chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once

	stats verifierCounters
}

// Principal is the identity behind a verified API key. Its slices
// (Scopes, Metadata, Tags, AllowedCIDRs) are shared with the Verifier's
// cache and must not be modified.
type Principal struct {
	KeyID  string
	UserID int64
	Name   string
	Prefix string
	Scopes []string
	// Environment is [EnvLive] or [EnvTest] as the key's prefix names it,
	// or "" (see [Key.Environment]).
	Environment string
	// Metadata is the key's JSON object, nil if none (see [Key.Metadata]).
	Metadata json.RawMessage
	// Tags are the key's tags.
	Tags []string
	// AllowedCIDRs are the networks the key is restricted to, if any; the
	// request was checked against them.
	AllowedCIDRs []netip.Prefix
}

// HasScope reports whether the principal's key carries scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// NewVerifier returns a Verifier reading keys from store.
func NewVerifier(store Store, opts VerifierOptions) *Verifier {
	if store == nil {
		panic("apikey: NewVerifier with a nil Store")
	}
	for _, p := range opts.Prefixes {
		if err := ValidPrefix(p); err != nil {
			panic(err.Error())
		}
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10_000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 30 * time.Second
	}
	if opts.FallbackTTL <= 0 {
		opts.FallbackTTL = time.Second
	}
	opts.FallbackTTL = min(opts.FallbackTTL, opts.CacheTTL)
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 5 * time.Second
	}
	if opts.Hasher == nil {
		opts.Hasher = SHA256Hasher{}
	}
	if opts.TouchInterval <= 0 {
		opts.TouchInterval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{
		store:   store,
		opts:    opts,
		cache:   newCache(opts.CacheSize, opts.CacheTTL, opts.NegativeTTL, opts.FallbackTTL),
		logger:  logger,
		touches: make(map[string]time.Time),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	v.key = store.Key
	if vs, ok := store.(VerifyStore); ok {
		v.key = vs.KeyForVerify
	}
	go v.flushLoop()
	return v
}

// Verify checks a token in its canonical form and returns the principal it
// identifies. It is one straight path: [Parse], the prefix check
// ([VerifierOptions.Prefixes]), the key by id (from the cache, or the
// store), a constant-time comparison of the secret's hash, then the key's
// state, and for a key restricted to networks ([Key.AllowedCIDRs]) the
// client's address, which only [WithClientAddr] can tell it: without one,
// such a key is refused (fail closed). The error wraps [ErrMalformed],
// [ErrInvalid], [ErrRevoked], [ErrExpired], [ErrInactive],
// [ErrAddressNotAllowed], or [ErrUnavailable] when the store could not be
// asked (fail closed: the caller must refuse the request).
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	t, err := Parse(token)
	if err != nil {
		v.stats.malformed.Add(1)
		return Principal{}, err
	}
	return v.verifyToken(ctx, t, origin{})
}

// VerifyToken is [Verifier.Verify] for a token already parsed with [Parse],
// for callers that need its id first (to log it, or to decide whether the
// verification may read the store: see [Verifier.Cached]).
func (v *Verifier) VerifyToken(ctx context.Context, t Token) (Principal, error) {
	return v.verifyToken(ctx, t, origin{})
}

func (v *Verifier) verifyToken(ctx context.Context, t Token, o origin) (Principal, error) {
	if t.ID == "" || t.secret == "" {
		v.stats.malformed.Add(1)
		return Principal{}, malformed("empty token")
	}
	if !v.accepts(t.Prefix) {
		v.stats.malformed.Add(1)
		return Principal{}, malformed("prefix not accepted")
	}
	return v.verify(ctx, t.ID, t.secret, t.Prefix, false, o)
}

// VerifySecret checks a key presented without its prefix and check
// characters, as its id and its 32-character secret (as in the FavoritesAPI
// seed's legacy "base64(<id>:<secret>)" credential, which
// [MiddlewareOptions.AcceptLegacyBase64] reads). The stored key's prefix
// must be one of [VerifierOptions.Prefixes], if they are set; otherwise the
// key is refused as [ErrInvalid], like an unknown one. Errors are those of
// [Verifier.Verify].
func (v *Verifier) VerifySecret(ctx context.Context, id, secret string) (Principal, error) {
	return v.verifySecret(ctx, id, secret, origin{})
}

func (v *Verifier) verifySecret(ctx context.Context, id, secret string, o origin) (Principal, error) {
	if len(id) != IDLen || !isBase62(id) || len(secret) != SecretLen || !isBase62(secret) {
		v.stats.malformed.Add(1)
		return Principal{}, malformed("id or secret of the wrong size or alphabet")
	}
	return v.verify(ctx, id, secret, "", false, o)
}

// Cached reports whether a verification of the key id would now be answered
// from memory, without a store query: the key is cached, or the id is
// remembered as unknown. A [Middleware] with a
// [MiddlewareOptions.LookupLimiter] asks it to spend a client's budget only
// on verifications that reach the store.
func (v *Verifier) Cached(id string) bool {
	_, ok := v.cache.get(id, v.opts.Now().UnixNano())
	return ok
}

// accepts reports whether prefix is one of VerifierOptions.Prefixes, or any
// prefix if none are set.
func (v *Verifier) accepts(prefix string) bool {
	return len(v.opts.Prefixes) == 0 || slices.Contains(v.opts.Prefixes, prefix)
}

// verify is the core of every verification: the key by id (cache, then
// store), its prefix (the presented one, if any, must be the stored one; the
// stored one must be accepted), the secret, then the state.
func (v *Verifier) verify(ctx context.Context, id, secret, prefix string, recheck bool, o origin) (Principal, error) {
	now := v.opts.Now()
	e, ok := v.cache.get(id, now.UnixNano())
	if ok {
		v.stats.cacheHits.Add(1)
	} else {
		v.stats.cacheMisses.Add(1)
		var found bool
		var err error
		e, found, err = v.cache.load(ctx, id, v.opts.Now, v.opts.LookupTimeout, v.lookup)
		if err != nil {
			v.stats.unavailable.Add(1)
			if ctx.Err() != nil {
				return Principal{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
			}
			return Principal{}, err
		}
		if !found {
			e = nil
		}
	}
	if e == nil {
		v.stats.invalid.Add(1)
		return Principal{}, ErrInvalid
	}
	k := &e.key
	if prefix != "" && prefix != k.Prefix || !v.accepts(k.Prefix) {
		v.stats.invalid.Add(1)
		return Principal{}, ErrInvalid
	}
	if !v.secretMatches(k, secret, now) {
		// The key may have been rolled by another instance since it was
		// cached: read it again, but at most once per NegativeTTL per key,
		// so that a flood of wrong secrets for a known id costs what a
		// flood of unknown ids does.
		if ok && !recheck && now.UnixNano()-e.loaded >= int64(v.opts.NegativeTTL) && v.cache.forget(id, e) {
			v.stats.rechecks.Add(1)
			return v.verify(ctx, id, secret, prefix, true, o)
		}
		v.stats.invalid.Add(1)
		return Principal{}, ErrInvalid
	}
	if err := k.err(now); err != nil {
		v.stats.count(err)
		return Principal{}, err
	}
	if len(k.AllowedCIDRs) > 0 {
		if addr, ok := o.addr(ctx); !ok || !allows(k.AllowedCIDRs, addr) {
			v.stats.addressRefused.Add(1)
			return Principal{}, ErrAddressNotAllowed
		}
	}
	v.stats.verified.Add(1)
	v.touch(e, now)
	return Principal{
		KeyID: k.ID, UserID: k.UserID, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes,
		Environment: environment(k.Prefix), Metadata: k.Metadata, Tags: k.Tags, AllowedCIDRs: k.AllowedCIDRs,
	}, nil
}

func (v *Verifier) secretMatches(k *Key, secret string, now time.Time) bool {
	if v.opts.Hasher.Compare(k.SecretHash, secret) {
		return true
	}
	return len(k.PreviousSecretHash) > 0 && now.Before(k.PreviousExpiresAt) &&
		v.opts.Hasher.Compare(k.PreviousSecretHash, secret)
}

// lookup reads a key from the store; store failures become ErrUnavailable.
func (v *Verifier) lookup(ctx context.Context, id string) (Key, bool, error) {
	v.stats.lookups.Add(1)
	ctx, end := span(v.opts.Trace, ctx, "apikey.Key")
	k, found, err := v.key(ctx, id)
	end(err)
	if err != nil {
		// A caller that gave up is not a store failure; a timeout is.
		if ctx.Err() == nil || context.Cause(ctx) == errLookupTimeout {
			v.logger.LogAttrs(ctx, slog.LevelWarn, "apikey: store lookup failed",
				slog.String("key_id", id), slog.Any("error", err))
		}
		return Key{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return k, found, nil
}

// Invalidate drops any cached state for the key id, so that the next
// verification reads the store. A [Manager] linked to the Verifier calls it
// after every change; call it yourself after changing keys by other means.
func (v *Verifier) Invalidate(id string) { v.cache.invalidate(id) }

// InvalidateUser drops every cached key of the user (after their account
// was deleted or disabled elsewhere), and any lookup in flight. It walks
// the whole cache: it is for rare events.
func (v *Verifier) InvalidateUser(userID int64) {
	v.cache.invalidateWhere(func(k *Key) bool { return k.UserID == userID })
}

// InvalidateAll drops every cached key and unknown id, and any lookup in
// flight.
func (v *Verifier) InvalidateAll() { v.cache.invalidateAll() }

// ShortenTTL makes every cached key, and every key read from now on, be
// served for at most [VerifierOptions.FallbackTTL] after it was read, until
// [Verifier.RestoreTTL]. Call it when changes made elsewhere may go
// unheard (an invalidation bus lost its subscription): a revocation then
// takes effect here within FallbackTTL instead of CacheTTL.
//
// It costs nothing on the request path but one more comparison; cached keys
// are read again at most once per FallbackTTL.
func (v *Verifier) ShortenTTL() { v.cache.distrust.Store(math.MaxInt64) }

// RestoreTTL ends [Verifier.ShortenTTL]: keys read from the store from now
// on are served for CacheTTL again, while keys read before keep the
// FallbackTTL, since a change to them may have gone unheard. Call it when
// changes made elsewhere are heard again (the bus's subscription is back).
func (v *Verifier) RestoreTTL() { v.cache.distrust.Store(v.opts.Now().UnixNano()) }

// touch queues the key's last use for the next batch write, at most once per
// TouchInterval per key, so that the request path only does an atomic load
// in the common case.
func (v *Verifier) touch(e *entry, now time.Time) {
	t := now.UnixNano()
	last := e.touched.Load()
	if t-last < int64(v.opts.TouchInterval) || !e.touched.CompareAndSwap(last, t) {
		return
	}
	v.touchMu.Lock()
	if prev, ok := v.touches[e.key.ID]; !ok || now.After(prev) {
		v.touches[e.key.ID] = now
	}
	v.touchMu.Unlock()
}

func (v *Verifier) flushLoop() {
	defer close(v.done)
	tick := time.NewTicker(v.opts.TouchInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			_ = v.Flush(context.Background())
		case <-v.stop:
			return
		}
	}
}

// Flush writes the pending last-use times to the store now. On failure they
// are kept for the next attempt.
func (v *Verifier) Flush(ctx context.Context) error {
	v.touchMu.Lock()
	batch := v.touches
	if len(batch) == 0 {
		v.touchMu.Unlock()
		return nil
	}
	v.touches = make(map[string]time.Time, len(batch))
	v.touchMu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, v.opts.LookupTimeout)
	defer cancel()
	tctx, end := span(v.opts.Trace, ctx, "apikey.TouchKeys")
	err := v.store.TouchKeys(tctx, batch)
	end(err)
	if err == nil {
		v.stats.touchesWritten.Add(uint64(len(batch)))
		return nil
	}
	v.stats.touchErrors.Add(1)
	v.logger.LogAttrs(ctx, slog.LevelWarn, "apikey: writing last-use times failed",
		slog.Int("keys", len(batch)), slog.Any("error", err))
	v.touchMu.Lock()
	for id, t := range batch {
		if prev, ok := v.touches[id]; !ok || t.After(prev) {
			v.touches[id] = t
		}
	}
	v.touchMu.Unlock()
	return err
}

// Close stops the background writer and flushes pending last-use times. It
// is safe to call more than once; verification keeps working afterwards,
// but last-use times are no longer written.
func (v *Verifier) Close() error {
	v.once.Do(func() {
		close(v.stop)
		<-v.done
		v.closeErr = v.Flush(context.Background())
	})
	return v.closeErr
}
