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
	args := []any{ts(e.Time), string(e.Kind), e.UserID, string(e.Actor.Kind), e.Actor.ID, ip, e.UserAgent, e.KeyID, detail}
	q := `INSERT INTO audit_events (at, kind, user_id, actor_kind, actor_id, ip, user_agent, key_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`
	if s.dialect.Name == DialectPostgres {
		// An id is drawn when the insert runs and seen when it commits;
		// the lock, taken before the id is drawn and held until the
		// commit, makes appends commit in id order, so that a reader never
		// sees an id before a smaller one (see AuditEvents). SQLite
		// serialises writes already.
		q = `WITH serial AS (SELECT pg_advisory_xact_lock(?))
			INSERT INTO audit_events (at, kind, user_id, actor_kind, actor_id, ip, user_agent, key_id, detail)
			SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM serial RETURNING id`
		args = append([]any{auditLockID}, args...)
	}
	var id int64
	err := s.db.GetContext(ctx, &id, s.db.Rebind(q), args...)
	return id, err
}

// auditLockID is the PostgreSQL advisory lock that orders appends to
// audit_events (the bytes of "audit" as a number).
const auditLockID = 0x6175646974

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
// with an id above afterID, oldest first. Events become visible in the
// order of their ids (on PostgreSQL, appends take a transaction-scoped
// advisory lock to that end; SQLite serialises them anyway), so a reader
// that follows the log by id while events are appended, resuming after
// the last id it read, misses none.
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
