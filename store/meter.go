package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/jmoiron/sqlx"
)

// The store keeps package billing/meter's outbox of Stripe meter events
// (migrate [Usage]). billing/meter links no Stripe client; its Stripe
// sender is a package of its own.
var _ meter.Store = (*Store)(nil)

// userChunk is the most user ids one query of HourlyCost names.
const userChunk = 500

// HourlyCost implements [meter.Store] from usage_hourly.
func (s *Store) HourlyCost(ctx context.Context, userIDs []string, from, to time.Time) ([]meter.SliceCost, error) {
	var out []meter.SliceCost
	for len(userIDs) > 0 {
		n := min(len(userIDs), userChunk)
		q, args, err := sqlx.In(`SELECT user_id, hour, SUM(cost) AS cost FROM usage_hourly
			WHERE user_id IN (?) AND hour >= ? AND hour < ? GROUP BY user_id, hour HAVING SUM(cost) > 0`,
			userIDs[:n], from.Unix(), to.Unix())
		if err != nil {
			return nil, err
		}
		var rows []struct {
			UserID string `db:"user_id"`
			Hour   int64  `db:"hour"`
			Cost   int64  `db:"cost"`
		}
		if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, r := range rows {
			out = append(out, meter.SliceCost{UserID: r.UserID, Slice: time.Unix(r.Hour, 0).UTC(), Cost: r.Cost})
		}
		userIDs = userIDs[n:]
	}
	return out, nil
}

// BilledMeterUsage implements [meter.Store].
func (s *Store) BilledMeterUsage(ctx context.Context, from, to time.Time) ([]meter.Billed, error) {
	var rows []struct {
		CustomerID string `db:"customer_id"`
		EventName  string `db:"event_name"`
		Slice      int64  `db:"slice"`
		Events     int    `db:"events"`
		Value      int64  `db:"value"`
	}
	err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT customer_id, event_name, slice, COUNT(*) AS events, SUM(value) AS value
		FROM meter_events WHERE slice >= ? AND slice < ? GROUP BY customer_id, event_name, slice`), from.Unix(), to.Unix())
	if err != nil {
		return nil, err
	}
	out := make([]meter.Billed, len(rows))
	for i, r := range rows {
		out[i] = meter.Billed{CustomerID: r.CustomerID, EventName: r.EventName, Slice: time.Unix(r.Slice, 0).UTC(), Events: r.Events, Value: r.Value}
	}
	return out, nil
}

// EnqueueMeterEvents implements [meter.Store], in one transaction.
func (s *Store) EnqueueMeterEvents(ctx context.Context, events []meter.Event) (int, error) {
	for _, e := range events {
		if e.Identifier == "" || e.CustomerID == "" || e.EventName == "" || e.Seq < 1 || e.Value <= 0 {
			return 0, fmt.Errorf("store: EnqueueMeterEvents: invalid event %q (customer %q, event name %q, seq %d, value %d)",
				e.Identifier, e.CustomerID, e.EventName, e.Seq, e.Value)
		}
	}
	inserted := 0
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		inserted = 0
		for _, e := range events {
			ok, err := affected(tx.ExecContext(ctx, tx.Rebind(`INSERT INTO meter_events (identifier, user_id, customer_id,
				event_name, slice, seq, value, event_time, state, next_attempt, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
				e.Identifier, e.UserID, e.CustomerID, e.EventName, e.Slice.Unix(), e.Seq, e.Value, e.Timestamp.Unix(),
				string(meter.Pending), e.NextAttempt.Unix(), e.CreatedAt.Unix()))
			if err != nil {
				return fmt.Errorf("store: enqueueing meter event %s: %w", e.Identifier, err)
			}
			if ok {
				inserted++
			}
		}
		return nil
	})
	return inserted, err
}

type meterRow struct {
	Identifier  string `db:"identifier"`
	UserID      string `db:"user_id"`
	CustomerID  string `db:"customer_id"`
	EventName   string `db:"event_name"`
	Slice       int64  `db:"slice"`
	Seq         int    `db:"seq"`
	Value       int64  `db:"value"`
	EventTime   int64  `db:"event_time"`
	State       string `db:"state"`
	Attempts    int    `db:"attempts"`
	NextAttempt int64  `db:"next_attempt"`
	LastError   string `db:"last_error"`
	CreatedAt   int64  `db:"created_at"`
	SentAt      int64  `db:"sent_at"`
}

const meterColumns = `identifier, user_id, customer_id, event_name, slice, seq, value, event_time, state,
	attempts, next_attempt, last_error, created_at, sent_at`

func (r meterRow) event() meter.Event {
	return meter.Event{
		Identifier: r.Identifier, UserID: r.UserID, CustomerID: r.CustomerID, EventName: r.EventName,
		Slice: time.Unix(r.Slice, 0).UTC(), Seq: r.Seq, Value: r.Value, Timestamp: time.Unix(r.EventTime, 0).UTC(),
		State: meter.State(r.State), Attempts: r.Attempts, NextAttempt: time.Unix(r.NextAttempt, 0).UTC(),
		LastError: r.LastError, CreatedAt: time.Unix(r.CreatedAt, 0).UTC(), SentAt: fromUnix(r.SentAt),
	}
}

// ClaimMeterEvents implements [meter.Store]: it reads candidates, then
// leases each with an update that succeeds for one caller only.
func (s *Store) ClaimMeterEvents(ctx context.Context, now, leaseUntil time.Time, limit int) ([]meter.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.db.Rebind(`SELECT identifier FROM meter_events
		WHERE state = ? AND next_attempt <= ? AND lease_until <= ? ORDER BY next_attempt, identifier LIMIT ?`),
		string(meter.Pending), now.Unix(), now.Unix(), limit)
	if err != nil {
		return nil, err
	}
	var out []meter.Event
	for _, id := range ids {
		var r meterRow
		err := s.db.GetContext(ctx, &r, s.db.Rebind(`UPDATE meter_events SET lease_until = ?, attempts = attempts + 1
			WHERE identifier = ? AND state = ? AND next_attempt <= ? AND lease_until <= ? RETURNING `+meterColumns),
			leaseUntil.Unix(), id, string(meter.Pending), now.Unix(), now.Unix())
		if found, err := isFound(err); err != nil {
			return out, err
		} else if found {
			out = append(out, r.event())
		}
	}
	return out, nil
}

// MarkMeterEventSent implements [meter.Store].
func (s *Store) MarkMeterEventSent(ctx context.Context, identifier string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE meter_events SET state = ?, sent_at = ?, lease_until = 0, last_error = ''
		WHERE identifier = ? AND state <> ?`), string(meter.Sent), at.Unix(), identifier, string(meter.Sent))
	ok, err := affected(res, err)
	if err != nil || ok {
		return err
	}
	return s.meterEventExists(ctx, identifier)
}

// MarkMeterEventFailed implements [meter.Store].
func (s *Store) MarkMeterEventFailed(ctx context.Context, identifier string, f meter.Failure) error {
	state := meter.Pending
	if f.Permanent {
		state = meter.Rejected
	}
	msg := f.Error
	if len(msg) > 1000 {
		msg = strings.ToValidUTF8(msg[:1000], "")
	}
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE meter_events SET state = ?, next_attempt = ?, last_error = ?, lease_until = 0
		WHERE identifier = ? AND state = ?`), string(state), f.NextAttempt.Unix(), msg, identifier, string(meter.Pending))
	ok, err := affected(res, err)
	if err != nil || ok {
		return err
	}
	return s.meterEventExists(ctx, identifier)
}

func (s *Store) meterEventExists(ctx context.Context, identifier string) error {
	var n int
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM meter_events WHERE identifier = ?`), identifier); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("store: meter event %q: %w", identifier, meter.ErrNotFound)
	}
	return nil
}

// MeterEvents implements [meter.Store].
func (s *Store) MeterEvents(ctx context.Context, state meter.State, limit int) ([]meter.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	var rows []meterRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+meterColumns+` FROM meter_events
		WHERE state = ? ORDER BY slice DESC, identifier LIMIT ?`), string(state), limit); err != nil {
		return nil, err
	}
	out := make([]meter.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

// RequeueMeterEvent implements [meter.Store].
func (s *Store) RequeueMeterEvent(ctx context.Context, identifier string, at time.Time) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE meter_events SET state = ?, next_attempt = ?, lease_until = 0
		WHERE identifier = ? AND state = ?`), string(meter.Pending), at.Unix(), identifier, string(meter.Rejected)))
}

// PruneMeterEvents deletes the sent meter events of slices before the
// given time, and returns how many it deleted. Keep them at least as long
// as billing/meter looks back (its Lookback), or usage counted late for
// those slices would be billed again.
func (s *Store) PruneMeterEvents(ctx context.Context, before time.Time) (int64, error) {
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM meter_events WHERE state = ? AND slice < ?`),
		string(meter.Sent), before.Unix()))
}
