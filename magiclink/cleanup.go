package magiclink

import (
	"context"
	"time"
)

// cleaner deletes used and expired rows every CleanupInterval.
func (s *Service) cleaner() {
	defer s.workers.Done()
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.baseCtx, time.Minute)
			n, err := s.store.DeleteExpired(ctx, s.opts.Now())
			cancel()
			if err != nil {
				s.stats.storeErrors.Add(1)
				s.logger.Warn("magiclink: deleting expired tokens and sessions", "err", err)
			} else if n > 0 {
				s.logger.Debug("magiclink: deleted expired tokens and sessions", "rows", n)
			}
		}
	}
}
