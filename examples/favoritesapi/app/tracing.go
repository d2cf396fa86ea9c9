package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the spans the service starts itself.
const tracerName = "github.com/apikit/apikit/examples/favoritesapi"

// traced wraps the service's handler in otelhttp's: one server span per
// request, named by its route pattern once routed (see
// [Server.instrument]). The API and the site are public endpoints: a
// client's traceparent header is linked, not adopted, so that no client
// chooses the service's trace ids or its sampling.
func (s *Server) traced(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, "favoritesapi",
		otelhttp.WithTracerProvider(s.tracerProvider),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		// Request metrics are Prometheus's (see instrument); nothing is
		// read from OpenTelemetry's global providers.
		otelhttp.WithMeterProvider(noopmetric.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return methodLabel(r.Method) + " " + routeLabel(r.Pattern)
		}),
	)
}

// traceHook adapts the service's tracer to the Trace hooks of packages
// apikey, store, billing, magiclink, plan, plan/redisplan and
// ratelimit/redislimit (func(ctx, name) (ctx, end)), or returns nil
// without tracing. A span's error status names the error's kind, never
// its message, which may carry an address.
func (s *Server) traceHook(kind trace.SpanKind) func(context.Context, string) (context.Context, func(error)) {
	if s.tracer == nil {
		return nil
	}
	return func(ctx context.Context, name string) (context.Context, func(error)) {
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(kind))
		return ctx, func(err error) { endSpan(span, err) }
	}
}

// span starts a span named name for work the service does itself, or does
// nothing without tracing.
func (s *Server) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	if s.tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(err error) { endSpan(span, err) }
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "")
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	}
	span.End()
}

// errorType is the error.type attribute of a failed span: a timeout, or
// the error's Go type.
func errorType(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return fmt.Sprintf("%T", err)
}

// tracedDecider is the plan decider with a span around each decision,
// which with Redis is the round trip (its command is a child span, see
// redisTracing).
type tracedDecider struct {
	plan.Decider
	s *Server
}

func (t tracedDecider) Decide(ctx context.Context, req plan.Request) (d plan.Decision, err error) {
	ctx, end := t.s.span(ctx, "plan.decide", attribute.Int("cost", req.Cost))
	defer func() {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("plan.allowed", d.Allowed))
		end(err)
	}()
	return t.Decider.Decide(ctx, req)
}

func (t tracedDecider) Charge(ctx context.Context, req plan.Request) (d plan.Decision, err error) {
	ctx, end := t.s.span(ctx, "plan.charge", attribute.Int("cost", req.Cost))
	defer func() { end(err) }()
	return t.Decider.Charge(ctx, req)
}

func (t tracedDecider) Peek(ctx context.Context, req plan.Request) (d plan.Decision, err error) {
	ctx, end := t.s.span(ctx, "plan.peek")
	defer func() { end(err) }()
	return t.Decider.Peek(ctx, req)
}

// tracedLimiter is the abuse limiter with a span around each decision.
type tracedLimiter struct {
	ratelimit.Limiter
	s *Server
}

func (t tracedLimiter) Allow(ctx context.Context, key string, limit ratelimit.Limit) (ratelimit.Decision, error) {
	return t.AllowN(ctx, key, limit, 1)
}

func (t tracedLimiter) AllowN(ctx context.Context, key string, limit ratelimit.Limit, n int) (d ratelimit.Decision, err error) {
	// The key names a client address or an email address: only its
	// limit's name (the part before the first colon) is recorded.
	name, _, _ := strings.Cut(key, ":")
	ctx, end := t.s.span(ctx, "ratelimit.allow", attribute.String("limit", name))
	defer func() {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("ratelimit.allowed", d.Allowed))
		end(err)
	}()
	return t.Limiter.AllowN(ctx, key, limit, n)
}

// redisTracing is a go-redis hook that starts a client span for each
// command or pipeline made within a traced request (background work, such
// as the invalidation bus's, makes none), named by the command only: keys
// and arguments name users and addresses.
type redisTracing struct{ s *Server }

func (h redisTracing) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisTracing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return next(ctx, cmd)
		}
		ctx, span := h.s.tracer.Start(ctx, "redis "+cmd.Name(), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", cmd.Name())))
		err := next(ctx, cmd)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		endSpan(span, err)
		return err
	}
}

func (h redisTracing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return next(ctx, cmds)
		}
		ctx, span := h.s.tracer.Start(ctx, "redis pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.Int("db.operation.batch.size", len(cmds))))
		err := next(ctx, cmds)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		endSpan(span, err)
		return err
	}
}
