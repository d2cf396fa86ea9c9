package redislimit_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// BenchmarkLocalAllow measures a decision of redislimit.Local from its
// local view (the sync loop running beside it, every 100ms), next to
// ratelimit.Memory as the control: "hot" is one key from one goroutine,
// "hot-parallel" one key from 32 goroutines on every CPU (as 32 HTTP
// connections share one API key), "keys-parallel" 32 goroutines on
// 100 keys. The limit is never reached, so every decision admits.
func BenchmarkLocalAllow(b *testing.B) {
	c := redis.NewClient(redisOptions(b))
	b.Cleanup(func() { c.Close() })
	local := redislimit.NewLocal(c, redislimit.LocalOptions{Options: redislimit.Options{Prefix: testPrefix()}})
	b.Cleanup(func() { local.Close(context.Background()) })
	limit := ratelimit.PerSecond(ratelimit.MaxCount)
	// Few enough keys that giving each its view (one round trip each)
	// takes well under a sync interval: Local forgets a key unused for a
	// whole interval, and a key first reached after that would be
	// decided exactly again.
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%011d", i)
	}
	ctx := context.Background()
	// The first decision on a key is exact and gives it a view.
	if _, err := local.Allow(ctx, keys[0], limit); err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		l    ratelimit.Limiter
	}{
		{"memory", ratelimit.NewMemory(ratelimit.MemoryOptions{})},
		{"local", local},
	} {
		b.Run(tt.name+"/hot", func(b *testing.B) {
			if _, err := tt.l.Allow(ctx, keys[0], limit); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d, err := tt.l.Allow(ctx, keys[0], limit); err != nil || !d.Allowed {
					b.Fatal(d, err)
				}
			}
		})
		b.Run(tt.name+"/hot-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if d, err := tt.l.Allow(ctx, keys[0], limit); err != nil || !d.Allowed {
						b.Fatal(d, err)
					}
				}
			})
		})
		b.Run(tt.name+"/keys-parallel", func(b *testing.B) {
			// Give every key its view again (the previous benchmarks
			// took longer than a sync interval) before timing.
			for _, k := range keys {
				if _, err := tt.l.Allow(ctx, k, limit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetParallelism(32)
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine starts elsewhere, as clients do not
				// move in step.
				i := int(next.Add(1)) * 13
				for pb.Next() {
					if d, err := tt.l.Allow(ctx, keys[i%len(keys)], limit); err != nil || !d.Allowed {
						b.Fatal(d, err)
					}
					i += 7
				}
			})
		})
	}
}
