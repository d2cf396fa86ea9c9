package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/jmoiron/sqlx"
)

// The store keeps package plan's durable state (migrate [Plans]): quota
// usage, as a [plan.UsageStore] for a [plan.Flusher], and per-identity
// overrides of a plan's limits and quota.
var _ plan.UsageStore = (*Store)(nil)

// usageChunk is the most rows one INSERT of AddUsage writes: four
// parameters a row stays under SQLite's oldest limit of 999.
const usageChunk = 200

// AddUsage implements [plan.UsageStore]: in one transaction it adds each
// entry's Count to the stored total of its (Identity, Period, Start),
// creating the total if there is none. The additions are upserts
// (count = count + n), so instances that share the database add up, and
// the batch applies entirely or not at all. Entries for one counter are
// summed first, and counters are written in a fixed order, so that two
// instances writing overlapping batches at once cannot deadlock.
// Period starts are stored in whole Unix seconds.
func (s *Store) AddUsage(ctx context.Context, batch []plan.Usage) error {
	type key struct {
		identity string
		period   string
		start    int64
	}
	sums := make(map[key]int64, len(batch))
	for _, u := range batch {
		if u.Identity == "" || (u.Period != plan.Day && u.Period != plan.Month && u.Period != plan.BillingPeriod) {
			return fmt.Errorf("store: AddUsage: invalid usage entry (identity %q, period %v)", u.Identity, u.Period)
		}
		if u.Count == 0 {
			continue
		}
		sums[key{u.Identity, u.Period.String(), u.Start.Unix()}] += u.Count
	}
	if len(sums) == 0 {
		return nil
	}
	keys := make([]key, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(strings.Compare(a.identity, b.identity), strings.Compare(a.period, b.period), cmp.Compare(a.start, b.start))
	})
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		for len(keys) > 0 {
			n := min(len(keys), usageChunk)
			var q strings.Builder
			q.WriteString(`INSERT INTO plan_usage (identity, period, period_start, count) VALUES `)
			args := make([]any, 0, 4*n)
			for i, k := range keys[:n] {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?)")
				args = append(args, k.identity, k.period, k.start, sums[k])
			}
			q.WriteString(` ON CONFLICT (identity, period, period_start) DO UPDATE SET count = plan_usage.count + excluded.count`)
			if _, err := tx.ExecContext(ctx, tx.Rebind(q.String()), args...); err != nil {
				return fmt.Errorf("store: adding quota usage: %w", err)
			}
			keys = keys[n:]
		}
		return nil
	})
}

// Usage implements [plan.UsageStore]: the stored total of (identity,
// period, start), or 0 if there is none.
func (s *Store) Usage(ctx context.Context, identity string, period plan.Period, start time.Time) (int64, error) {
	var n int64
	err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT count FROM plan_usage
		WHERE identity = ? AND period = ? AND period_start = ?`), identity, period.String(), start.Unix())
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// PruneUsage deletes the usage of quota periods that started before the
// given time, and returns how many totals it deleted. Totals are one row
// per identity and period, so they may be kept for a long time as usage
// history; prune those no report needs.
func (s *Store) PruneUsage(ctx context.Context, before time.Time) (int64, error) {
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM plan_usage WHERE period_start < ?`), before.Unix()))
}

// overrideRow is a plan_overrides row.
type overrideRow struct {
	Identity string         `db:"identity"`
	Limits   sql.NullString `db:"limits"`
	Quota    sql.NullString `db:"quota"`
}

// SetOverride stores o as the override of id's limits or quota, replacing
// any it had, stamped with at. It refuses an invalid identity or override
// (the error says why). Deciders read overrides from memory: give them an
// [OverrideCache], which reloads them periodically, or the map of
// [Store.Overrides].
func (s *Store) SetOverride(ctx context.Context, id plan.Identity, o plan.Override, at time.Time) error {
	if err := validIdentity(id); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("store: SetOverride for %v: %w", id, err)
	}
	var limits, quota any
	if o.Limits != nil {
		names := make([]string, len(o.Limits))
		for i, l := range o.Limits {
			names[i] = l.String()
		}
		b, err := json.Marshal(names)
		if err != nil {
			return err
		}
		limits = string(b)
	}
	if o.Quota != nil {
		quota = o.Quota.String() // "" removes the plan's quota
	}
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO plan_overrides (identity, limits, quota, updated_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (identity) DO UPDATE SET limits = excluded.limits,
		quota = excluded.quota, updated_at = excluded.updated_at`), id.String(), limits, quota, ts(at))
	return err
}

// DeleteOverride deletes id's override; found reports whether it had one.
func (s *Store) DeleteOverride(ctx context.Context, id plan.Identity) (found bool, err error) {
	if err := validIdentity(id); err != nil {
		return false, err
	}
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM plan_overrides WHERE identity = ?`), id.String()))
}

// Overrides loads every stored override, for a decider's
// plan.MemoryOptions.Overrides (or redisplan's). The table is small (one
// row per customer with a negotiated deal), so it is read whole; reload it
// after a change. A row that no longer parses is an error naming its
// identity.
func (s *Store) Overrides(ctx context.Context) (plan.OverrideMap, error) {
	var rows []overrideRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT identity, limits, quota FROM plan_overrides`); err != nil {
		return nil, err
	}
	m := make(plan.OverrideMap, len(rows))
	for _, r := range rows {
		id, o, err := r.override()
		if err != nil {
			return nil, fmt.Errorf("store: the plan override of %q: %w", r.Identity, err)
		}
		m[id] = o
	}
	return m, nil
}

func (r overrideRow) override() (plan.Identity, plan.Override, error) {
	var (
		id plan.Identity
		o  plan.Override
	)
	kind, name, ok := strings.Cut(r.Identity, ":")
	switch {
	case !ok || name == "":
		return id, o, errors.New("not an identity (want user:ID or key:ID)")
	case kind == "user":
		id = plan.Identity{Budget: plan.PerUser, ID: name}
	case kind == "key":
		id = plan.Identity{Budget: plan.PerKey, ID: name}
	default:
		return id, o, errors.New("not an identity (want user:ID or key:ID)")
	}
	if r.Limits.Valid {
		var names []string
		if err := json.Unmarshal([]byte(r.Limits.String), &names); err != nil {
			return id, o, fmt.Errorf("limits: %w", err)
		}
		o.Limits = make([]ratelimit.Limit, len(names))
		for i, n := range names {
			l, err := ratelimit.ParseLimit(n)
			if err != nil {
				return id, o, fmt.Errorf("limits[%d]: %w", i, err)
			}
			o.Limits[i] = l
		}
	}
	if r.Quota.Valid {
		q := new(plan.Quota)
		if err := q.UnmarshalText([]byte(r.Quota.String)); err != nil {
			return id, o, fmt.Errorf("quota: %w", err)
		}
		o.Quota = q
	}
	return id, o, o.Validate()
}

// validIdentity checks an identity given to SetOverride or DeleteOverride.
func validIdentity(id plan.Identity) error {
	if (id.Budget != plan.PerUser && id.Budget != plan.PerKey) || id.ID == "" || len(id.ID) > 255 {
		return fmt.Errorf("store: invalid plan identity %v: want a user or key id of 1 to 255 bytes", id)
	}
	return nil
}

// OverrideCache is a [plan.Overrides] over the store's overrides, for a
// decider (plan.MemoryOptions.Overrides, or redisplan's): it answers from
// memory, without locking or allocating, and reloads the whole table every
// interval, so that an override set by another process (an operator's
// CLI, another instance) applies within one interval. A failed reload
// keeps the overrides loaded before, and is logged. Create it with
// [Store.OverrideCache] and stop it with Close.
type OverrideCache struct {
	st      *Store
	timeout time.Duration
	log     *slog.Logger
	cur     atomic.Pointer[plan.OverrideMap]

	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

var _ plan.Overrides = (*OverrideCache)(nil)

// OverrideCache loads the overrides (an error if that fails: a decider
// should not start without them) and returns a cache of them that reloads
// every interval until closed; interval <= 0 means only on
// [OverrideCache.Reload]. logger receives failed reloads (nil: none).
func (s *Store) OverrideCache(ctx context.Context, interval time.Duration, logger *slog.Logger) (*OverrideCache, error) {
	c := &OverrideCache{st: s, timeout: 10 * time.Second, log: logger, stop: make(chan struct{}), done: make(chan struct{})}
	if err := c.Reload(ctx); err != nil {
		return nil, err
	}
	if interval <= 0 {
		close(c.done)
		return c, nil
	}
	go c.loop(interval)
	return c, nil
}

func (c *OverrideCache) loop(every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), min(c.timeout, every))
			if err := c.Reload(ctx); err != nil && c.log != nil {
				c.log.LogAttrs(ctx, slog.LevelWarn, "store: reloading plan overrides failed; keeping the ones loaded before",
					slog.String("error", err.Error()))
			}
			cancel()
		}
	}
}

// Reload reads the overrides from the store now, and serves them from
// then on. On failure the overrides loaded before stay in use.
func (c *OverrideCache) Reload(ctx context.Context) error {
	m, err := c.st.Overrides(ctx)
	if err != nil {
		return err
	}
	c.cur.Store(&m)
	return nil
}

// Override implements [plan.Overrides].
func (c *OverrideCache) Override(id plan.Identity) (plan.Override, bool) {
	o, ok := (*c.cur.Load())[id]
	return o, ok
}

// Len returns the number of overrides loaded.
func (c *OverrideCache) Len() int { return len(*c.cur.Load()) }

// Close stops the periodic reloads; the cache keeps answering with the
// overrides loaded last. Close is idempotent.
func (c *OverrideCache) Close() {
	c.closed.Do(func() { close(c.stop) })
	<-c.done
}
