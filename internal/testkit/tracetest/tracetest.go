// Package tracetest records the spans of a Trace hook, the
// func(ctx, name) (context.Context, func(error)) that the limiters, the
// plan decider and flusher take, and whether each operation ran with the
// context the hook returned.
package tracetest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Span is one call of a Trace hook as read by [Tracer.Spans].
type Span struct {
	Name  string
	Ended bool
	Err   error // the error the span ended with
	Used  bool  // the operation ran with the context Trace returned ([MarkUsed])
}

type span struct {
	name  string
	ended bool
	err   error
	used  atomic.Bool
}

type spanKey struct{}

// Tracer records the spans its Trace method starts. The zero value is
// ready to use, from any number of goroutines.
type Tracer struct {
	mu    sync.Mutex
	spans []*span
}

// Trace is a Trace hook: it records a span named name and returns a
// context that carries it and the function that ends it.
func (tr *Tracer) Trace(ctx context.Context, name string) (context.Context, func(error)) {
	s := &span{name: name}
	tr.mu.Lock()
	tr.spans = append(tr.spans, s)
	tr.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, s), func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		s.ended, s.err = true, err
	}
}

// Spans returns the spans so far, in the order they started.
func (tr *Tracer) Spans() []Span {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]Span, len(tr.spans))
	for i, s := range tr.spans {
		out[i] = Span{s.name, s.ended, s.err, s.used.Load()}
	}
	return out
}

// MarkUsed marks the span ctx carries, if any, as used: call it where the
// traced operation's context arrives (a store wrapper, a Redis hook).
func MarkUsed(ctx context.Context) {
	if s, ok := ctx.Value(spanKey{}).(*span); ok {
		s.used.Store(true)
	}
}

// RedisHook is a go-redis hook that marks the span of each command's and
// pipeline's context as used.
type RedisHook struct{}

// DialHook implements redis.Hook.
func (RedisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		MarkUsed(ctx)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		MarkUsed(ctx)
		return next(ctx, cmds)
	}
}
