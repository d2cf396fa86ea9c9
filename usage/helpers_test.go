package usage_test

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/apikit/apikit/usage"
)

// memStore is a usage.Store in memory that can fail on demand, and can
// apply a batch and still report failure (an ambiguous commit).
type memStore struct {
	mu        sync.Mutex
	counts    map[[3]string]usage.Counts // user, key, unix hour
	batches   map[string]bool
	fail      error
	ambiguous bool // apply, then return fail
	calls     int
}

func newMemStore() *memStore {
	return &memStore{counts: map[[3]string]usage.Counts{}, batches: map[string]bool{}}
}

func (s *memStore) AddCounts(_ context.Context, b usage.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil && !s.ambiguous {
		return s.fail
	}
	if !s.batches[b.ID] {
		s.batches[b.ID] = true
		for _, c := range b.Counts {
			k := [3]string{c.UserID, c.KeyID, c.Start.UTC().Format(time.RFC3339)}
			v := s.counts[k]
			v.Add(c.Counts)
			s.counts[k] = v
		}
	}
	return s.fail
}

func (s *memStore) Counts(_ context.Context, q usage.Query) ([]usage.Count, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []usage.Count
	for k, v := range s.counts {
		start, _ := time.Parse(time.RFC3339, k[2])
		if k[0] != q.UserID || (q.KeyID != "" && k[1] != q.KeyID) || start.Before(q.From) || !start.Before(q.To) {
			continue
		}
		out = append(out, usage.Count{UserID: k[0], KeyID: k[1], Start: q.Granularity.Truncate(start), Counts: v})
	}
	return out, nil
}

func (s *memStore) total(user string) usage.Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c usage.Counts
	for k, v := range s.counts {
		if k[0] == user {
			c.Add(v)
		}
	}
	return c
}

func (s *memStore) setFail(err error, ambiguous bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.ambiguous = err, ambiguous
}

var errDown = errors.New("store down")
