package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/httprate"
	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// unlimited is a limit no benchmark reaches, so that every decision takes
// the allowing path, where the most work is done.
var unlimited = ratelimit.Limit{Count: ratelimit.MaxCount, Period: time.Second}

// keyIDs returns n distinct keys shaped like API key ids (12 characters).
func keyIDs(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%011d", i)
	}
	return keys
}

func BenchmarkMemoryAllow(b *testing.B) {
	ctx := context.Background()
	b.Run("hot", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		b.ReportAllocs()
		for b.Loop() {
			m.Allow(ctx, "k00000000001", unlimited)
		}
	})
	b.Run("hot-parallel", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Allow(ctx, "k00000000001", unlimited)
			}
		})
	})
	b.Run("1M-keys", func(b *testing.B) {
		// Decisions spread over a million tracked keys (memory-bound:
		// most lookups miss the CPU caches), and the heap each key costs.
		const n = 1_000_000
		keys := keyIDs(n)
		limit := ratelimit.PerMinute(100)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// Room to spare: the cap is per shard, and hashing is not even.
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: 2 * n})
		for _, k := range keys {
			m.Allow(ctx, k, limit)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if st := m.Stats(); st.Keys != n {
			b.Fatalf("tracking %d keys; want %d", st.Keys, n)
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			m.Allow(ctx, keys[i], limit)
			if i++; i == n {
				i = 0
			}
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
		runtime.KeepAlive(m)
	})
	b.Run("flood", func(b *testing.B) {
		// Every key new, at the cap: each decision adds a key and evicts one.
		const n = 100_000
		keys := keyIDs(2 * n)
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: n})
		for _, k := range keys[:n] {
			m.Allow(ctx, k, unlimited)
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := n
		for b.Loop() {
			m.Allow(ctx, keys[i], unlimited)
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

// discard is a ResponseWriter that keeps nothing, so that the middleware
// benchmarks measure the middleware, not a recorder.
type discard http.Header

func (d discard) Header() http.Header       { return http.Header(d) }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

func BenchmarkMiddleware(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	byKey := func(r *http.Request) (string, error) { return r.Header.Get("X-Key"), nil }
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"bare", ok},
		{"memory", ratelimit.Middleware(ratelimit.NewMemory(ratelimit.MemoryOptions{}),
			ratelimit.MiddlewareOptions{KeyFunc: byKey, Limit: unlimited})(ok)},
		// go-chi/httprate configured alike: the same key function and a
		// limit that is never reached.
		{"httprate", httprate.LimitBy(unlimited.Count, unlimited.Period, byKey)(ok)},
	}
	for _, tt := range handlers {
		b.Run(tt.name, func(b *testing.B) {
			r, _ := http.NewRequest("GET", "/api/favorites", nil)
			r.Header.Set("X-Key", "k00000000001")
			w := make(discard)
			b.ReportAllocs()
			for b.Loop() {
				clear(w)
				tt.h.ServeHTTP(w, r)
			}
		})
		b.Run(tt.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int32
			b.RunParallel(func(pb *testing.PB) {
				// One key per goroutine, as with concurrent clients.
				r, _ := http.NewRequest("GET", "/api/favorites", nil)
				r.Header.Set("X-Key", "k"+strconv.Itoa(int(next.Add(1))))
				w := make(discard)
				for pb.Next() {
					clear(w)
					tt.h.ServeHTTP(w, r)
				}
			})
		})
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	client := redisClient(b)
	l := redislimit.New(client, redislimit.Options{Prefix: testPrefix(b, client)})
	ctx := context.Background()
	limit := ratelimit.PerSecond(ratelimit.MaxCount)
	if _, err := l.Allow(ctx, "hot", limit); err != nil {
		b.Fatal(err)
	}
	b.Run("loopback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Allow(ctx, "hot", limit); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("loopback-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Allow(ctx, "hot", limit); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	// With a client that honours context deadlines, the decision runs on
	// the caller's goroutine.
	opt := *client.Options()
	opt.ContextTimeoutEnabled = true
	direct := redis.NewClient(&opt)
	b.Cleanup(func() { direct.Close() })
	ld := redislimit.New(direct, redislimit.Options{Prefix: testPrefix(b, client)})
	b.Run("loopback-ctxtimeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ld.Allow(ctx, "hot", limit); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRedisLocalAllow measures redislimit.Local on one hot key: a
// decision from the local view, with the sync loop running (every
// 100ms) beside it.
func BenchmarkRedisLocalAllow(b *testing.B) {
	client := redisClient(b)
	l := redislimit.NewLocal(client, redislimit.LocalOptions{Options: redislimit.Options{Prefix: testPrefix(b, client)}})
	b.Cleanup(func() { l.Close(context.Background()) })
	ctx := context.Background()
	limit := ratelimit.PerSecond(ratelimit.MaxCount)
	if _, err := l.Allow(ctx, "hot", limit); err != nil {
		b.Fatal(err)
	}
	b.Run("hot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, err := l.Allow(ctx, "hot", limit); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("hot-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := l.Allow(ctx, "hot", limit); err != nil || !d.Allowed {
					b.Fatal(d, err)
				}
			}
		})
	})
}
