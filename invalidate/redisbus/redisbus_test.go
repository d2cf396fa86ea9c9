package redisbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/bustest"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/invalidate/redisbus"
	"github.com/redis/go-redis/v9"
)

func TestConformance(t *testing.T) {
	opts, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, opts.Addr, func(t *testing.T, channel, addr string) *invalidate.Hub {
		o := *opts
		o.Addr = addr
		o.ContextTimeoutEnabled = true
		c := redis.NewClient(&o)
		h, err := redisbus.New(c, redisbus.Options{Channel: channel, Hub: invalidate.Options{MaxPending: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h.Close(ctx)
			c.Close()
		})
		return h
	})
}
