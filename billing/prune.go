package billing

import (
	"context"
	"time"
)

// Prune deletes webhook event ids older than [Options.EventRetention] and
// consumed checkout sessions as old, and returns how many rows it deleted.
// The Service runs it every [Options.PruneInterval]; call it yourself only
// if you disabled that.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	return s.store.PruneBilling(ctx, s.opts.Now().Add(-s.opts.EventRetention))
}

// startPruner starts the background pruning, unless it is disabled.
func (s *Service) startPruner() {
	s.stop = make(chan struct{})
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	if s.opts.PruneInterval > 0 {
		s.pruner.Go(s.prunePeriodically)
	}
}

// prunePeriodically runs Prune every PruneInterval until Close.
func (s *Service) prunePeriodically() {
	t := time.NewTicker(s.opts.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.baseCtx, time.Minute)
			n, err := s.Prune(ctx)
			cancel()
			if err != nil {
				s.stats.pruneErrors.Add(1)
				s.opts.Logger.Warn("billing: pruning webhook events and checkout sessions", "err", err)
				continue
			}
			s.stats.pruned.Add(uint64(n))
			if n > 0 {
				s.opts.Logger.Debug("billing: pruned webhook events and checkout sessions", "rows", n)
			}
		}
	}
}

// Close stops the background pruning, waiting for a prune under way to end
// unless ctx ends first (then the prune is cancelled, and Close returns
// ctx's error). The handlers keep working after Close. Close is safe to
// call more than once.
func (s *Service) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		done := make(chan struct{})
		go func() { s.pruner.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
			err = ctx.Err()
		}
		s.cancel()
	})
	return err
}
