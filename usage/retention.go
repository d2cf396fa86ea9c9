package usage

import (
	"context"
	"fmt"
	"time"
)

// Defaults of [Retention].
const (
	// DefaultHourlyFor is how long hourly counts are kept before they are
	// rolled up into daily counts.
	DefaultHourlyFor = 30 * 24 * time.Hour
	// DefaultDailyFor is how long daily counts are kept.
	DefaultDailyFor = 400 * 24 * time.Hour
)

// Retention says how long usage is kept: by the hour for HourlyFor, then
// by the day until DailyFor. The zero value gives the defaults.
type Retention struct {
	// HourlyFor is how long hourly counts are kept, rounded up to whole
	// days; 0 means [DefaultHourlyFor]. Keep it longer than anything that
	// reads hours (billing/meter's lookback).
	HourlyFor time.Duration
	// DailyFor is how long daily counts are kept; 0 means
	// [DefaultDailyFor]. It is at least HourlyFor.
	DailyFor time.Duration
}

// Apply rolls up and prunes s's counts as of now: hours older than
// HourlyFor (whole UTC days) become days, days older than DailyFor are
// deleted. Run it periodically (hourly, say) from one or several
// instances: concurrent runs are safe. It returns the rows rolled up and
// deleted.
func (r Retention) Apply(ctx context.Context, s Maintainer, now time.Time) (rolled, pruned int64, err error) {
	if r.HourlyFor <= 0 {
		r.HourlyFor = DefaultHourlyFor
	}
	if r.DailyFor <= 0 {
		r.DailyFor = DefaultDailyFor
	}
	r.DailyFor = max(r.DailyFor, r.HourlyFor)
	before := Day.Truncate(now.Add(-r.HourlyFor))
	if rolled, err = s.RollupCounts(ctx, before); err != nil {
		return rolled, 0, fmt.Errorf("usage: rolling up hourly counts: %w", err)
	}
	// A Meter retries a batch only while it lives: records of batches
	// are kept as long as hours are.
	if pruned, err = s.PruneCounts(ctx, Day.Truncate(now.Add(-r.DailyFor)), before); err != nil {
		return rolled, pruned, fmt.Errorf("usage: deleting old daily counts: %w", err)
	}
	return rolled, pruned, nil
}
