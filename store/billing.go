package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apikit/apikit/billing/subscription"
	"github.com/jmoiron/sqlx"
)

var _ subscription.Store = (*Store)(nil)

// subRow is a billing_subscriptions row joined with its customer's user.
type subRow struct {
	SubscriptionID     string        `db:"subscription_id"`
	CustomerID         string        `db:"customer_id"`
	Status             string        `db:"status"`
	PriceID            string        `db:"price_id"`
	CurrentPeriodStart sql.NullTime  `db:"current_period_start"`
	CurrentPeriodEnd   sql.NullTime  `db:"current_period_end"`
	BillingCycleAnchor sql.NullTime  `db:"billing_cycle_anchor"`
	CancelAtPeriodEnd  bool          `db:"cancel_at_period_end"`
	Ended              bool          `db:"ended"`
	EventCreated       int64         `db:"event_created"`
	UpdatedAt          time.Time     `db:"updated_at"`
	UserID             sql.NullInt64 `db:"user_id"`
}

const subColumns = `s.subscription_id, s.customer_id, s.status, s.price_id, s.current_period_start, s.current_period_end,
	s.billing_cycle_anchor, s.cancel_at_period_end, s.ended, s.event_created, s.updated_at, c.user_id`

func (r subRow) subscription() subscription.Subscription {
	return subscription.Subscription{
		UserID: r.UserID.Int64, CustomerID: r.CustomerID, SubscriptionID: r.SubscriptionID,
		Status: r.Status, PriceID: r.PriceID,
		CurrentPeriodStart: fromNull(r.CurrentPeriodStart), CurrentPeriodEnd: fromNull(r.CurrentPeriodEnd),
		BillingCycleAnchor: fromNull(r.BillingCycleAnchor),
		CancelAtPeriodEnd:  r.CancelAtPeriodEnd, Ended: r.Ended,
		EventCreated: fromUnix(r.EventCreated),
		UpdatedAt:    r.UpdatedAt.UTC(),
	}
}

// unix converts a time to the Unix seconds stored for event times; the
// zero time is 0.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// ApplyEvent implements [subscription.Store] in one transaction, stamping
// what it writes with ev.ReceivedAt (which must be set): the event id is
// inserted first, so a concurrent delivery of the same event waits on it
// (PostgreSQL's unique index; SQLite's write lock) and then finds it. The
// subscription is written with an upsert whose WHERE clause is the
// out-of-order guard, so the guard holds even for two new rows racing.
func (s *Store) ApplyEvent(ctx context.Context, ev subscription.Event, ch subscription.Change) (subscription.Applied, error) {
	if ev.ReceivedAt.IsZero() {
		return subscription.Applied{}, errors.New("store: ApplyEvent: the event has no ReceivedAt")
	}
	var out subscription.Applied
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		out = subscription.Applied{}
		recorded, err := affected(tx.ExecContext(ctx, tx.Rebind(`INSERT INTO billing_webhook_events
			(event_id, type, created, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`),
			ev.ID, ev.Type, unix(ev.Created), ts(ev.ReceivedAt)))
		if err != nil {
			return err
		}
		if !recorded {
			out.Duplicate = true
			return errDuplicate
		}
		sub := ch.Subscription
		if sub.SubscriptionID != "" {
			if out.Previous, out.PreviousFound, err = s.subscriptionTx(ctx, tx, sub.SubscriptionID); err != nil {
				return err
			}
		}
		if ch.UserID != 0 && ch.CustomerID != "" {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO billing_customers (customer_id, user_id, created_at)
				VALUES (?, ?, ?) ON CONFLICT (customer_id) DO NOTHING`), ch.CustomerID, ch.UserID, ts(ev.ReceivedAt)); err != nil {
				return err
			}
		}
		customer := ch.CustomerID
		if sub.SubscriptionID != "" {
			customer = sub.CustomerID
			if out.Current, out.Written, err = s.writeSubscription(ctx, tx, sub, ch.Mode, ev.ReceivedAt); err != nil {
				return err
			}
			if out.Written {
				out.CurrentFound = true
			} else {
				out.Current, out.CurrentFound = out.Previous, out.PreviousFound
			}
		}
		if customer != "" {
			err := tx.GetContext(ctx, &out.UserID, tx.Rebind(
				`SELECT user_id FROM billing_customers WHERE customer_id = ?`), customer)
			if _, err := isFound(err); err != nil {
				return err
			}
			if out.CurrentFound {
				out.Current.UserID = out.UserID
			}
		}
		return nil
	})
	if errors.Is(err, errDuplicate) {
		return subscription.Applied{Duplicate: true}, nil
	}
	if err != nil {
		return subscription.Applied{}, err
	}
	return out, nil
}

// errDuplicate rolls back the transaction of a duplicate event.
var errDuplicate = errors.New("store: duplicate event")

func (s *Store) subscriptionTx(ctx context.Context, tx *sqlx.Tx, id string) (subscription.Subscription, bool, error) {
	q := `SELECT ` + subColumns + ` FROM billing_subscriptions s
		LEFT JOIN billing_customers c ON c.customer_id = s.customer_id WHERE s.subscription_id = ?`
	if s.dialect.Name == DialectPostgres {
		q += ` FOR UPDATE OF s`
	}
	var r subRow
	ok, err := isFound(tx.GetContext(ctx, &r, tx.Rebind(q), id))
	if !ok {
		return subscription.Subscription{}, false, err
	}
	return r.subscription(), true, nil
}

// tieRank is the SQL for subscription.StatusPrecedence of the stored row's
// status, built from the Go function so that the two cannot disagree.
var tieRank = func() string {
	var b strings.Builder
	b.WriteString("CASE billing_subscriptions.status")
	for _, st := range []string{"incomplete", "trialing", "active", "past_due", "paused", "unpaid", "canceled", "incomplete_expired"} {
		fmt.Fprintf(&b, " WHEN '%s' THEN %d", st, subscription.StatusPrecedence(st))
	}
	b.WriteString(" ELSE 0 END")
	return b.String()
}()

// writeSubscription upserts the row as mode says and returns it as
// written; written is false when the guard kept the stored row. The upsert
// returns its row (RETURNING), so nothing is read again.
func (s *Store) writeSubscription(ctx context.Context, tx *sqlx.Tx, sub subscription.Subscription, mode subscription.WriteMode, at time.Time) (subscription.Subscription, bool, error) {
	ended := mode == subscription.WriteTerminal
	insert := `INSERT INTO billing_subscriptions (subscription_id, customer_id, status, price_id,
		current_period_start, current_period_end, billing_cycle_anchor, cancel_at_period_end, ended, event_created, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id) `
	const set = `DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
		price_id = excluded.price_id, current_period_start = excluded.current_period_start,
		current_period_end = excluded.current_period_end, billing_cycle_anchor = excluded.billing_cycle_anchor,
		cancel_at_period_end = excluded.cancel_at_period_end, ended = excluded.ended,
		updated_at = excluded.updated_at, event_created = excluded.event_created `
	args := []any{sub.SubscriptionID, sub.CustomerID, sub.Status, sub.PriceID, ts(sub.CurrentPeriodStart),
		ts(sub.CurrentPeriodEnd), ts(sub.BillingCycleAnchor), sub.CancelAtPeriodEnd, ended, unix(sub.EventCreated), ts(at)}
	switch mode {
	case subscription.WriteIfAbsent:
		insert += `DO NOTHING`
	case subscription.WriteTerminal:
		insert += set + `WHERE NOT billing_subscriptions.ended`
	case subscription.WriteCurrent:
		insert += set + `WHERE NOT billing_subscriptions.ended AND billing_subscriptions.event_created <= excluded.event_created`
	default:
		// Ties are settled by status precedence, in the statement itself,
		// so that the rule holds for concurrent deliveries too.
		insert += set + `WHERE NOT billing_subscriptions.ended AND (billing_subscriptions.event_created < excluded.event_created
			OR (billing_subscriptions.event_created = excluded.event_created AND ` + tieRank + ` <= ?))`
		args = append(args, subscription.StatusPrecedence(sub.Status))
	}
	insert += ` RETURNING subscription_id, customer_id, status, price_id, current_period_start, current_period_end,
		billing_cycle_anchor, cancel_at_period_end, ended, event_created, updated_at`
	var r subRow
	ok, err := isFound(tx.GetContext(ctx, &r, tx.Rebind(insert), args...))
	if !ok {
		return subscription.Subscription{}, false, err
	}
	return r.subscription(), true, nil
}

// Subscriptions implements [subscription.Store].
func (s *Store) Subscriptions(ctx context.Context, userID int64) ([]subscription.Subscription, error) {
	var rows []subRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+subColumns+`
		FROM billing_subscriptions s JOIN billing_customers c ON c.customer_id = s.customer_id
		WHERE c.user_id = ? ORDER BY s.event_created DESC, s.subscription_id`), userID); err != nil {
		return nil, err
	}
	subs := make([]subscription.Subscription, len(rows))
	for i, r := range rows {
		subs[i] = r.subscription()
	}
	return subs, nil
}

// SubscriptionByID implements [subscription.Store].
func (s *Store) SubscriptionByID(ctx context.Context, subscriptionID string) (subscription.Subscription, bool, error) {
	var r subRow
	ok, err := isFound(s.db.GetContext(ctx, &r, s.db.Rebind(`SELECT `+subColumns+` FROM billing_subscriptions s
		LEFT JOIN billing_customers c ON c.customer_id = s.customer_id WHERE s.subscription_id = ?`), subscriptionID))
	if !ok {
		return subscription.Subscription{}, false, err
	}
	return r.subscription(), true, nil
}

// Customers implements [subscription.Store].
func (s *Store) Customers(ctx context.Context, userID int64) ([]string, error) {
	ids := []string{}
	err := s.db.SelectContext(ctx, &ids, s.db.Rebind(`SELECT customer_id FROM billing_customers
		WHERE user_id = ? ORDER BY created_at DESC, customer_id DESC`), userID)
	return ids, err
}

// ConsumeCheckoutSession implements [subscription.Store] with one INSERT: the
// primary key lets exactly one of concurrent calls insert the row.
func (s *Store) ConsumeCheckoutSession(ctx context.Context, sessionID string, userID int64, at time.Time) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO billing_checkout_sessions
		(session_id, user_id, consumed_at) VALUES (?, ?, ?) ON CONFLICT (session_id) DO NOTHING`),
		sessionID, userID, ts(at)))
}

// PruneBilling implements [subscription.Store] in one transaction.
func (s *Store) PruneBilling(ctx context.Context, before time.Time) (int64, error) {
	t := ts(before)
	var total int64
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx, tx.Rebind(`DELETE FROM billing_webhook_events WHERE received_at < ?`), t))
		if err != nil {
			return err
		}
		m, err := rowsAffected(tx.ExecContext(ctx, tx.Rebind(`DELETE FROM billing_checkout_sessions WHERE consumed_at < ?`), t))
		total = n + m
		return err
	})
	return total, err
}

// SubscriptionsWithPrices returns the subscriptions that are not ended,
// whose price is one of priceIDs and whose customer is linked to a user,
// ordered by user and subscription: for instance the subscribers of the
// plans billed by usage, whom billing/meter's Options.Customers lists
// (keep those that are entitling, subscription.Subscription.Entitling).
func (s *Store) SubscriptionsWithPrices(ctx context.Context, priceIDs []string) ([]subscription.Subscription, error) {
	if len(priceIDs) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(`SELECT `+subColumns+`
		FROM billing_subscriptions s JOIN billing_customers c ON c.customer_id = s.customer_id
		WHERE s.price_id IN (?) AND NOT s.ended ORDER BY c.user_id, s.subscription_id`, priceIDs)
	if err != nil {
		return nil, err
	}
	var rows []subRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(q), args...); err != nil {
		return nil, err
	}
	subs := make([]subscription.Subscription, len(rows))
	for i, r := range rows {
		subs[i] = r.subscription()
	}
	return subs, nil
}
