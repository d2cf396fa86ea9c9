package apikey

import "context"

// span starts the span name with trace, if set ([VerifierOptions.Trace],
// [ManagerOptions.Trace]); without one it returns ctx and a shared no-op,
// allocating nothing.
func span(trace func(context.Context, string) (context.Context, func(error)), ctx context.Context, name string) (context.Context, func(error)) {
	if trace == nil {
		return ctx, endNothing
	}
	return trace(ctx, name)
}

func endNothing(error) {}
