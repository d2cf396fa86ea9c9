package redisdeadline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestHonoured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		want   bool
	}{
		{"Client", redis.NewClient(&redis.Options{}), false},
		{"ClientContextTimeoutEnabled", redis.NewClient(&redis.Options{ContextTimeoutEnabled: true}), true},
		{"ClusterClientContextTimeoutEnabled", redis.NewClusterClient(&redis.ClusterOptions{ContextTimeoutEnabled: true}), true},
		{"RingContextTimeoutEnabled", redis.NewRing(&redis.RingOptions{ContextTimeoutEnabled: true}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.client.Close()
			if got := Honoured(tc.client); got != tc.want {
				t.Errorf("Honoured = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWaitReturnsTheResult(t *testing.T) {
	boom := errors.New("boom")
	v, err := Wait(context.Background(), func() (int, error) { return 7, boom })
	if v != 7 || err != boom {
		t.Errorf("Wait = %v, %v; want 7, boom", v, err)
	}
}

// A command that does not return ends at the deadline all the same.
func TestWaitEndsAtTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	v, err := Wait(ctx, func() (int, error) { <-release; return 7, nil })
	if v != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, %v; want 0, context.DeadlineExceeded", v, err)
	}
}
