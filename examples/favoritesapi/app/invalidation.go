package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/invalidate/pgbus"
	"github.com/apikit/apikit/invalidate/redisbus"
	"github.com/apikit/apikit/store"
	"github.com/redis/go-redis/v9"
)

// DefaultInvalidationChannel is the channel of the invalidation bus.
const DefaultInvalidationChannel = "favoritesapi_invalidate"

// OpenBus opens the invalidation bus that cfg.Invalidation names, sending
// through st's pool (postgres) or a client of its own (redis); channel ""
// is [DefaultInvalidationChannel]. The favoritesapi command's keys and
// override subcommands publish through it, without subscribing; close it
// to send what is queued.
func OpenBus(ctx context.Context, cfg Config, st *store.Store, logger *slog.Logger, channel string) (invalidate.Bus, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return openBus(ctx, cfg, st, logger, channel)
}

func openBus(_ context.Context, cfg Config, st *store.Store, logger *slog.Logger, channel string) (invalidate.Bus, error) {
	channel = cmp.Or(channel, DefaultInvalidationChannel)
	hub := invalidate.Options{Logger: logger}
	switch cfg.Invalidation {
	case "postgres":
		b, err := pgbus.New(st.DB().DB, cfg.InvalidationURL, pgbus.Options{Channel: channel, Hub: hub})
		if err != nil {
			return nil, fmt.Errorf("INVALIDATION=postgres: %w", err)
		}
		return b, nil
	case "redis":
		ropts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		ropts.ContextTimeoutEnabled = true
		c := redis.NewClient(ropts)
		b, err := redisbus.New(c, redisbus.Options{Channel: channel, Hub: hub})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("INVALIDATION=redis: %w", err)
		}
		return closing{b, c}, nil
	}
	return &invalidate.Nop{}, nil
}

// closing closes a bus, then the client it owns.
type closing struct {
	invalidate.Bus
	c *redis.Client
}

func (c closing) Close(ctx context.Context) error {
	err := c.Bus.Close(ctx)
	c.c.Close()
	return err
}

// invalidated drops what another instance changed.
func (s *Server) invalidated(e invalidate.Event) {
	switch e.Kind {
	case invalidate.KeyChanged:
		s.verifier.Invalidate(e.ID)
	case invalidate.UserChanged:
		id, _ := e.UserID()
		s.verifier.InvalidateUser(id)
		s.billing.Forget(id)
		s.reloadOverrides()
	case invalidate.SessionsRevoked:
		// Sessions are read from the database on every request: nothing
		// is cached to drop.
	case invalidate.Everything:
		s.verifier.InvalidateAll()
		s.billing.ForgetAll()
		s.reloadOverrides()
	}
}

// degraded shortens the caches' TTL while changes made elsewhere may go
// unheard.
func (s *Server) degraded(down bool) {
	if down {
		s.verifier.ShortenTTL()
		s.billing.ShortenTTL()
		return
	}
	s.verifier.RestoreTTL()
	s.billing.RestoreTTL()
}

// reloadOverrides reads the plan overrides again, in the background (the
// bus's handler must not block), for an override set by the CLI.
// Events arriving during a reload queue one more, never more: a flood
// costs one reload at a time.
func (s *Server) reloadOverrides() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.reloading {
		s.reloadAgain = true
		return
	}
	s.reloading = true
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.overrides.Reload(ctx); err != nil {
				s.logger.Warn("reloading plan overrides after an invalidation", "error", err)
			}
			cancel()
			s.reloadMu.Lock()
			if !s.reloadAgain {
				s.reloading = false
				s.reloadMu.Unlock()
				return
			}
			s.reloadAgain = false
			s.reloadMu.Unlock()
		}
	}()
}
