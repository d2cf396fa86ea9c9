// Package redisbus is an [invalidate.Hub] over Redis pub/sub (through
// github.com/redis/go-redis/v9): messages are published on the client's
// pool and received on one connection of the Hub's own.
//
// Pub/sub channels are server-wide (all databases share them): give each
// application, and each test, a channel of its own ([Options.Channel]).
package redisbus

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/invalidate"
	"github.com/redis/go-redis/v9"
)

// DefaultChannel is the channel used when [Options.Channel] is empty.
const DefaultChannel = "apikit:invalidate"

// maxMessage keeps messages small; Redis itself takes up to 512 MB.
const maxMessage = 64 << 10

// Options configures the bus.
type Options struct {
	// Channel is the pub/sub channel (default [DefaultChannel]).
	Channel string
	// Hub configures the Hub: pings, backoff, bounds, logger.
	Hub invalidate.Options
}

// New returns a Hub that publishes through c and subscribes on a
// connection of its own, opened by the first Subscribe.
func New(c redis.UniversalClient, opts Options) (*invalidate.Hub, error) {
	if c == nil {
		return nil, errors.New("redisbus: New with a nil client")
	}
	if opts.Channel == "" {
		opts.Channel = DefaultChannel
	}
	return invalidate.New(&transport{c: c, channel: opts.Channel}, opts.Hub), nil
}

type transport struct {
	c       redis.UniversalClient
	channel string
}

func (t *transport) MaxMessage() int { return maxMessage }

func (t *transport) Send(ctx context.Context, msg string) error {
	return t.c.Publish(ctx, t.channel, msg).Err()
}

func (t *transport) Listen(ctx context.Context) (invalidate.Listener, error) {
	ps := t.c.Subscribe(ctx, t.channel)
	// The subscription is in force once Redis confirms it.
	for {
		m, err := ps.Receive(ctx)
		if err != nil {
			ps.Close()
			return nil, err
		}
		if _, ok := m.(*redis.Subscription); ok {
			return &listener{ps: ps}, nil
		}
	}
}

type listener struct {
	ps     *redis.PubSub
	failed atomic.Pointer[error]
}

func (l *listener) Receive(ctx context.Context) (string, error) {
	if err := l.failed.Load(); err != nil {
		return "", *err
	}
	timeout := time.Duration(0)
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	m, err := l.ps.ReceiveTimeout(ctx, timeout)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", context.DeadlineExceeded
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	switch m := m.(type) {
	case *redis.Message:
		return m.Payload, nil
	default: // *redis.Pong, *redis.Subscription
		return "", nil
	}
}

func (l *listener) Ping() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.ps.Ping(ctx); err != nil {
		l.failed.Store(&err)
	}
}

func (l *listener) Close() error { return l.ps.Close() }
