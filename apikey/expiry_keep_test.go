package apikey_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// pruneRecorder records the cutoff of its PruneNotices.
type pruneRecorder struct {
	*apikeytest.MemoryStore
	before time.Time
}

func (p *pruneRecorder) PruneNotices(ctx context.Context, before time.Time) (int64, error) {
	p.before = before
	return 0, nil
}

// KeepClaims is kept as given, raised only to Lookback + 8 days (so that a
// claim outlives the window it guards), and 90 days when unset.
func TestExpiryKeepClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	for _, tt := range []struct {
		keep, lookback, want time.Duration
	}{
		{0, 0, 90 * day},
		{30 * day, 0, 30 * day},
		{day, 0, 15 * day},
		{30 * day, 40 * day, 48 * day},
	} {
		p := &pruneRecorder{MemoryStore: apikeytest.NewMemoryStore()}
		n := apikey.NewExpiryNotifier(p, apikey.ExpiryOptions{KeepClaims: tt.keep, Lookback: tt.lookback, Now: func() time.Time { return now }})
		if _, err := n.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := now.Sub(p.before); got != tt.want {
			t.Errorf("KeepClaims %v, Lookback %v: claims kept %v, want %v", tt.keep, tt.lookback, got, tt.want)
		}
	}
}
