package apikeytest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apikit/apikit/apikey"
)

// MemoryStore keeps keys, users and notice claims in memory. It implements
// every store interface of package apikey ([apikey.Store],
// [apikey.AttributeStore], [apikey.ExpiryStore], [apikey.NoticePruner]) and
// passes this package's suites; it is for tests, and as a reference for
// implementers. It is safe for concurrent use. The zero value is not
// usable; call [NewMemoryStore].
type MemoryStore struct {
	mu     sync.Mutex
	keys   map[string]apikey.Key
	users  map[string]int64
	claims map[claimKey]time.Time
	fail   error
}

type claimKey struct {
	kind, keyID string
	due         int64 // unix microseconds
}

func keyOf(c apikey.NoticeClaim) claimKey {
	return claimKey{c.Kind, c.KeyID, c.Due.UnixMicro()}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{keys: map[string]apikey.Key{}, users: map[string]int64{}, claims: map[claimKey]time.Time{}}
}

// Fail makes every later call fail with err, as an unreachable database
// would; Fail(nil) heals the store.
func (s *MemoryStore) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// CreateUser implements [Users].
func (s *MemoryStore) CreateUser(_ context.Context, email string, _ time.Time) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, false, s.fail
	}
	email = strings.ToLower(email)
	if id, ok := s.users[email]; ok {
		return id, false, nil
	}
	id := int64(len(s.users) + 1)
	s.users[email] = id
	return id, true, nil
}

func clone(k apikey.Key) apikey.Key {
	k.SecretHash = bytes.Clone(k.SecretHash)
	k.PreviousSecretHash = bytes.Clone(k.PreviousSecretHash)
	k.Scopes = slices.Clone(k.Scopes)
	k.Metadata = bytes.Clone(k.Metadata)
	k.Tags = slices.Clone(k.Tags)
	k.AllowedCIDRs = slices.Clone(k.AllowedCIDRs)
	return k
}

// at returns t as a store keeps it: UTC, microseconds.
func at(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

func stored(k apikey.Key) apikey.Key {
	k = clone(k)
	k.PreviousExpiresAt, k.CreatedAt, k.UpdatedAt = at(k.PreviousExpiresAt), at(k.CreatedAt), at(k.UpdatedAt)
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = at(k.LastUsedAt), at(k.ExpiresAt), at(k.RevokedAt)
	return k
}

// CreateKey implements [apikey.Store].
func (s *MemoryStore) CreateKey(_ context.Context, k apikey.Key, maxPerUser int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.keys[k.ID]; ok {
		return fmt.Errorf("apikeytest: key %s exists", k.ID)
	}
	if maxPerUser > 0 {
		n := 0
		for _, o := range s.keys {
			if o.UserID == k.UserID {
				n++
			}
		}
		if n >= maxPerUser {
			return fmt.Errorf("%w: user %d holds %d keys", apikey.ErrTooManyKeys, k.UserID, n)
		}
	}
	s.keys[k.ID] = stored(k)
	return nil
}

// Key implements [apikey.Store].
func (s *MemoryStore) Key(_ context.Context, id string) (apikey.Key, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return apikey.Key{}, false, s.fail
	}
	k, ok := s.keys[id]
	if !ok {
		return apikey.Key{}, false, nil
	}
	return clone(k), true, nil
}

// KeysByUser implements [apikey.Store].
func (s *MemoryStore) KeysByUser(_ context.Context, userID int64) ([]apikey.Key, error) {
	return s.matching(func(k apikey.Key) bool { return k.UserID == userID }, func(a, b apikey.Key) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.ID, b.ID))
	})
}

// matching returns copies of the keys keep accepts, sorted by order.
func (s *MemoryStore) matching(keep func(apikey.Key) bool, order func(a, b apikey.Key) int) ([]apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []apikey.Key
	for _, k := range s.keys {
		if keep(k) {
			out = append(out, clone(k))
		}
	}
	slices.SortFunc(out, order)
	return out, nil
}

func (s *MemoryStore) update(id string, f func(*apikey.Key) bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	k, ok := s.keys[id]
	if !ok || !f(&k) {
		return false, nil
	}
	s.keys[id] = k
	return true, nil
}

// RevokeKey implements [apikey.Store].
func (s *MemoryStore) RevokeKey(_ context.Context, id string, t time.Time) (bool, error) {
	return s.update(id, func(k *apikey.Key) bool {
		if k.RevokedAt.IsZero() {
			k.RevokedAt, k.UpdatedAt = at(t), at(t)
		}
		return true
	})
}

// RenameKey implements [apikey.Store].
func (s *MemoryStore) RenameKey(_ context.Context, id, name string, t time.Time) (bool, error) {
	return s.update(id, func(k *apikey.Key) bool { k.Name, k.UpdatedAt = name, at(t); return true })
}

// SetKeyActive implements [apikey.Store].
func (s *MemoryStore) SetKeyActive(_ context.Context, id string, active bool, t time.Time) (bool, error) {
	return s.update(id, func(k *apikey.Key) bool { k.Active, k.UpdatedAt = active, at(t); return true })
}

// RollKey implements [apikey.Store].
func (s *MemoryStore) RollKey(_ context.Context, id string, newHash []byte, previousExpiresAt, t time.Time) (bool, error) {
	return s.update(id, func(k *apikey.Key) bool {
		if !k.RevokedAt.IsZero() {
			return false
		}
		k.PreviousSecretHash, k.PreviousExpiresAt = k.SecretHash, at(previousExpiresAt)
		k.SecretHash, k.UpdatedAt = bytes.Clone(newHash), at(t)
		return true
	})
}

// TouchKeys implements [apikey.Store].
func (s *MemoryStore) TouchKeys(_ context.Context, used map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for id, t := range used {
		if k, ok := s.keys[id]; ok && at(t).After(k.LastUsedAt) {
			k.LastUsedAt = at(t)
			s.keys[id] = k
		}
	}
	return nil
}

// StoresKeyAttributes implements [apikey.AttributeStore].
func (*MemoryStore) StoresKeyAttributes() {}

// KeysExpiring implements [apikey.ExpiryStore].
func (s *MemoryStore) KeysExpiring(_ context.Context, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	return s.window(func(k apikey.Key) time.Time { return k.ExpiresAt }, from, afterID, to, limit)
}

// KeysGraceEnding implements [apikey.ExpiryStore].
func (s *MemoryStore) KeysGraceEnding(_ context.Context, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	return s.window(func(k apikey.Key) time.Time {
		if len(k.PreviousSecretHash) == 0 {
			return time.Time{}
		}
		return k.PreviousExpiresAt
	}, from, afterID, to, limit)
}

func (s *MemoryStore) window(when func(apikey.Key) time.Time, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	out, err := s.matching(func(k apikey.Key) bool {
		t := when(k)
		if t.IsZero() || !k.RevokedAt.IsZero() || !t.Before(to) {
			return false
		}
		return t.After(from) || t.Equal(from) && k.ID > afterID
	}, func(a, b apikey.Key) int {
		return cmp.Or(when(a).Compare(when(b)), strings.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// ClaimNotice implements [apikey.NoticeStore].
func (s *MemoryStore) ClaimNotice(_ context.Context, c apikey.NoticeClaim, t time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	if _, ok := s.claims[keyOf(c)]; ok {
		return false, nil
	}
	s.claims[keyOf(c)] = at(t)
	return true, nil
}

// ReleaseNotice implements [apikey.NoticeStore].
func (s *MemoryStore) ReleaseNotice(_ context.Context, c apikey.NoticeClaim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.claims, keyOf(c))
	return nil
}

// PruneNotices implements [apikey.NoticePruner].
func (s *MemoryStore) PruneNotices(_ context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	var n int64
	for c, t := range s.claims {
		if t.Before(before) {
			delete(s.claims, c)
			n++
		}
	}
	return n, nil
}
