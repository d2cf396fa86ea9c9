package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/apikit/apikit/audit"
)

var _ audit.Store = (*Store)(nil)

// auditRow is an audit_events row as stored.
type auditRow struct {
	ID        int64          `db:"id"`
	At        time.Time      `db:"at"`
	Kind      string         `db:"kind"`
	UserID    int64          `db:"user_id"`
	ActorKind string         `db:"actor_kind"`
	ActorID   string         `db:"actor_id"`
	IP        sql.NullString `db:"ip"`
	UserAgent string         `db:"user_agent"`
	KeyID     string         `db:"key_id"`
	Detail    sql.NullString `db:"detail"`
}

const auditColumns = `id, at, kind, user_id, actor_kind, actor_id, ip, user_agent, key_id, detail`

func (r auditRow) event() (audit.Event, error) {
	e := audit.Event{ID: r.ID, Time: r.At.UTC(), Kind: audit.Kind(r.Kind), UserID: r.UserID,
		Actor: audit.Actor{Kind: audit.ActorKind(r.ActorKind), ID: r.ActorID}, UserAgent: r.UserAgent, KeyID: r.KeyID}
	if r.IP.Valid {
		ip, err := netip.ParseAddr(r.IP.String)
		if err != nil {
			return audit.Event{}, fmt.Errorf("store: audit event %d: stored address %q: %w", r.ID, r.IP.String, err)
		}
		e.IP = ip
	}
	if r.Detail.Valid && r.Detail.String != "" {
		if err := json.Unmarshal([]byte(r.Detail.String), &e.Detail); err != nil {
			return audit.Event{}, fmt.Errorf("store: audit event %d: stored detail: %w", r.ID, err)
		}
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
	}
	return e, nil
}

func (s *Store) auditEvents(ctx context.Context, query string, args ...any) ([]audit.Event, error) {
	var rows []auditRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(query), args...); err != nil {
		return nil, err
	}
	es := make([]audit.Event, len(rows))
	for i, r := range rows {
		var err error
		if es[i], err = r.event(); err != nil {
			return nil, err
		}
	}
	return es, nil
}

// AppendAuditEvent implements [audit.Store]: it inserts the event into
// audit_events (migrate [Audit]) and returns the id the database assigned.
// The event's Time must be set ([audit.Log.Append] sets it); it is stored
// at microsecond precision.
func (s *Store) AppendAuditEvent(ctx context.Context, e audit.Event) (int64, error) {
	if e.Time.IsZero() {
		return 0, errors.New("store: AppendAuditEvent: the event has no time")
	}
	var ip, detail any
	if e.IP.IsValid() {
		ip = e.IP.String()
	}
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return 0, fmt.Errorf("store: AppendAuditEvent: %w", err)
		}
		detail = string(b)
	}
	var id int64
	err := s.db.GetContext(ctx, &id, s.db.Rebind(`INSERT INTO audit_events
		(at, kind, user_id, actor_kind, actor_id, ip, user_agent, key_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		ts(e.Time), string(e.Kind), e.UserID, string(e.Actor.Kind), e.Actor.ID, ip, e.UserAgent, e.KeyID, detail)
	return id, err
}

// AuditEventsByUser implements [audit.Store]: up to limit of the user's
// events with an id below beforeID (all if beforeID <= 0), newest first.
func (s *Store) AuditEventsByUser(ctx context.Context, userID int64, beforeID int64, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	if beforeID <= 0 {
		return s.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE user_id = ?
			ORDER BY id DESC LIMIT ?`, userID, limit)
	}
	return s.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE user_id = ? AND id < ?
		ORDER BY id DESC LIMIT ?`, userID, beforeID, limit)
}

// AuditEvents implements [audit.Store]: up to limit events of every user
// with an id above afterID, oldest first.
//
// On PostgreSQL, ids are taken when an append starts and become visible
// when it commits, so concurrent appends may commit out of id order: a
// page read while events are being appended can miss an event with a
// smaller id that commits just after. An export that runs alongside
// appends and must not miss one should start over from an earlier id, or
// run again and skip the ids it wrote. SQLite serialises appends, so there
// ids commit in order.
func (s *Store) AuditEvents(ctx context.Context, afterID int64, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE id > ?
		ORDER BY id LIMIT ?`, afterID, limit)
}

// PruneAuditEvents implements [audit.Store]: it deletes the events whose
// Time is before t.
func (s *Store) PruneAuditEvents(ctx context.Context, t time.Time) (int64, error) {
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM audit_events WHERE at < ?`), ts(t)))
}
