package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Store persists events for a [Log]. The store packages of this module
// implement it; audittest.Run checks any implementation.
//
// Contract:
//   - Events are append-only: nothing but PruneAuditEvents removes or
//     changes one.
//   - IDs are positive, unique and increase with each append (a later
//     append has a larger ID, also across connections).
//   - Times are stored with at least microsecond precision and returned
//     in UTC; an invalid IP is stored as NULL and read back invalid;
//     Detail round-trips as given (nil and empty both read back as nil).
//   - Errors are for system failures only; implementations must be safe
//     for concurrent use.
type Store interface {
	// AppendAuditEvent stores e (whose ID is zero) and returns its ID.
	AppendAuditEvent(ctx context.Context, e Event) (id int64, err error)
	// AuditEventsByUser returns up to limit events of the user with an ID
	// below beforeID (no bound if beforeID <= 0), newest (largest ID)
	// first.
	AuditEventsByUser(ctx context.Context, userID int64, beforeID int64, limit int) ([]Event, error)
	// AuditEvents returns up to limit events with an ID above afterID, of
	// every user, oldest first: a page of an export.
	AuditEvents(ctx context.Context, afterID int64, limit int) ([]Event, error)
	// PruneAuditEvents deletes the events whose Time is before t and
	// returns how many it deleted.
	PruneAuditEvents(ctx context.Context, t time.Time) (int64, error)
}

// Page selects a page of a user's events for [Log.List].
type Page struct {
	// Limit is the most events returned (default 50, at most 1000).
	Limit int
	// Before, if positive, is the Next of the previous page: events older
	// than those already shown.
	Before int64
}

// List returns a page of the user's events, newest first, and the Before
// of the next page (0 when there is none).
func (l *Log) List(ctx context.Context, userID int64, p Page) ([]Event, int64, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	events, err := l.store.AuditEventsByUser(ctx, userID, p.Before, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: listing events: %w", err)
	}
	var next int64
	if len(events) > limit {
		events = events[:limit]
		next = events[limit-1].ID
	}
	return events, next, nil
}

// exportPage is how many events Export reads per query.
const exportPage = 500

// Export writes every event, oldest first, to w as JSON lines: one JSON
// object per line, with the fields of [Event] under their JSON names. If
// userID is positive, only that user's events are written. It reads the
// store a page at a time, so memory stays bounded whatever the log's size.
func (l *Log) Export(ctx context.Context, w io.Writer, userID int64) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var after int64
	for {
		events, err := l.store.AuditEvents(ctx, after, exportPage)
		if err != nil {
			return fmt.Errorf("audit: exporting events: %w", err)
		}
		for _, e := range events {
			if userID > 0 && e.UserID != userID {
				continue
			}
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("audit: writing the export: %w", err)
			}
		}
		if len(events) < exportPage {
			return nil
		}
		after = events[len(events)-1].ID
	}
}

// Prune deletes the events older than [Options.Retention] and returns how
// many it deleted. Call it periodically (daily, say) from one instance or
// several: it is idempotent.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	n, err := l.store.PruneAuditEvents(ctx, l.opts.Now().Add(-l.opts.Retention))
	if err != nil {
		return 0, fmt.Errorf("audit: pruning: %w", err)
	}
	return n, nil
}
