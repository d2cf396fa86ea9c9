package drain

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A flush that fails is tried again until it succeeds.
func TestFlushRetries(t *testing.T) {
	calls := 0
	err := Flush(context.Background(), time.Minute, func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("store down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Flush = %v after %d calls, want nil after 3", err, calls)
	}
}

// A context without a deadline gets the timeout; the error says both what
// failed and that time ran out.
func TestFlushGivesUp(t *testing.T) {
	down := errors.New("store down")
	start := time.Now()
	err := Flush(context.Background(), 250*time.Millisecond, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("flush called without a deadline")
		}
		return down
	})
	if !errors.Is(err, down) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush = %v, want the flush's error and context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("Flush gave up after %v, want about 250ms", d)
	}
}

// A caller's own deadline wins over the default.
func TestFlushCallerDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	err := Flush(ctx, time.Hour, func(ctx context.Context) error {
		if got, _ := ctx.Deadline(); !got.Equal(want) {
			t.Errorf("flush deadline %v, want the caller's %v", got, want)
		}
		return errors.New("store down")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush = %v, want context.DeadlineExceeded", err)
	}
}

// Every writes on each tick and each kick, with a bounded context, passes
// failures on, and closes done once stopped.
func TestEvery(t *testing.T) {
	stop, kick, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	calls := make(chan bool, 10)
	failures := make(chan error, 10)
	down := errors.New("store down")
	flush := func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		calls <- ok
		return down
	}
	go Every(stop, kick, done, time.Hour, time.Minute, flush, func(_ context.Context, err error) { failures <- err })

	kick <- struct{}{}
	if bounded := <-calls; !bounded {
		t.Error("flush called without a deadline")
	}
	if err := <-failures; !errors.Is(err, down) {
		t.Errorf("failed got %v, want the flush's error", err)
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not closed after stop")
	}

	// Without a kick, the ticker drives it.
	stop, done = make(chan struct{}), make(chan struct{})
	go Every(stop, nil, done, time.Millisecond, time.Minute, func(context.Context) error { calls <- true; return nil },
		func(context.Context, error) { t.Error("failed called for a flush that succeeded") })
	for range 3 {
		<-calls
	}
	close(stop)
	<-done
}
