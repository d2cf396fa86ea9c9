package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/jmoiron/sqlx"
)

// User is an account: the identity that API keys, login sessions and
// subscriptions belong to.
type User struct {
	ID    int64
	Email string // lowercased; unique, compared case-insensitively
	// VerifiedAt is when the address was first proven (a login link or
	// code sent to it was used, or an email change to it confirmed); the
	// zero time while it has not been.
	VerifiedAt time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// userRow is a users row as stored.
type userRow struct {
	ID         int64        `db:"id"`
	Email      string       `db:"email"`
	VerifiedAt sql.NullTime `db:"verified_at"`
	CreatedAt  time.Time    `db:"created_at"`
	UpdatedAt  time.Time    `db:"updated_at"`
}

const userColumns = `id, email, verified_at, created_at, updated_at`

func (r userRow) user() User {
	return User{ID: r.ID, Email: r.Email, VerifiedAt: fromNull(r.VerifiedAt),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// Emails are compared case-insensitively; the store keeps them lowercased.
func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// CreateUser returns the id of the user with the given email, creating the
// user, unverified, at the given time if there is none; created reports
// which. Concurrent calls for one email create one user. Validating the
// address is the caller's job. It implements billing's Store.
func (s *Store) CreateUser(ctx context.Context, email string, at time.Time) (id int64, created bool, err error) {
	email = normEmail(email)
	t := ts(at)
	err = s.db.GetContext(ctx, &id, s.db.Rebind(
		`INSERT INTO users (email, created_at, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT ((lower(email))) DO NOTHING RETURNING id`), email, t, t)
	if err == nil {
		return id, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, err
	}
	// The user exists (or was created concurrently and is committed now).
	id, ok, err := s.UserByEmail(ctx, email)
	if err == nil && !ok {
		err = errors.New("store: CreateUser: the address has an account that cannot be read")
	}
	return id, false, err
}

// EnsureUser is [Store.CreateUser] at the current time.
//
// Deprecated: use CreateUser, which takes the time. EnsureUser remains
// while magiclink.Store lists it.
func (s *Store) EnsureUser(ctx context.Context, email string) (id int64, created bool, err error) {
	return s.CreateUser(ctx, email, time.Now())
}

// UserByEmail returns the id of the user with the given email
// (case-insensitively).
func (s *Store) UserByEmail(ctx context.Context, email string) (id int64, found bool, err error) {
	err = s.db.GetContext(ctx, &id, s.db.Rebind(`SELECT id FROM users WHERE lower(email) = ?`), normEmail(email))
	found, err = isFound(err)
	return id, found, err
}

// UserEmail returns the email address of the user with the given id.
func (s *Store) UserEmail(ctx context.Context, id int64) (email string, found bool, err error) {
	err = s.db.GetContext(ctx, &email, s.db.Rebind(`SELECT email FROM users WHERE id = ?`), id)
	found, err = isFound(err)
	return email, found, err
}

// User returns the user with the given id; found is false if there is
// none.
func (s *Store) User(ctx context.Context, id int64) (u User, found bool, err error) {
	var r userRow
	ok, err := isFound(s.db.GetContext(ctx, &r, s.db.Rebind(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
	if !ok {
		return User{}, false, err
	}
	return r.user(), true, nil
}

// MaxUsersPage is the most users one call of [Store.Users] returns.
const MaxUsersPage = 1000

// Users returns a page of users in the order of their ids: at most limit
// users (100 if limit <= 0, at most [MaxUsersPage]) whose id is greater
// than after. Start with after = 0, and pass the last ID of a page to get
// the next; an empty page is the end. Users created while paging appear
// on a later page, and deleted ones never shift the pages.
func (s *Store) Users(ctx context.Context, after int64, limit int) ([]User, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxUsersPage)
	var rows []userRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+userColumns+` FROM users
		WHERE id > ? ORDER BY id LIMIT ?`), after, limit); err != nil {
		return nil, err
	}
	us := make([]User, len(rows))
	for i, r := range rows {
		us[i] = r.user()
	}
	return us, nil
}

// DeleteUserOptions says what [Store.DeleteUser] does with a user's
// billing history. The zero value keeps it.
type DeleteUserOptions struct {
	// DeleteSubscriptions deletes the stored subscriptions of the user's
	// Stripe customers too. By default they are kept as history: unlinked
	// from any user (their UserID reads 0), still updated by Stripe's
	// webhooks, and never linked to another user.
	DeleteSubscriptions bool
}

// DeleteUser deletes the user and, in the same transaction, everything
// that belongs to the account in the features migrated: API keys, login
// sessions, pending email changes, login tokens sent to the address, the
// links to the user's Stripe customers and the Checkout sessions they
// consumed, and with [DeleteUserOptions.DeleteSubscriptions] the
// subscriptions of those customers. found reports whether the user
// existed. It does not delete rows of the application's own tables, and
// it cancels nothing at Stripe: cancel the user's subscriptions first (in
// the Billing Portal or the Stripe API) if they should stop billing. With
// [Plans] migrated it also deletes the plan overrides and quota usage of
// the user and of their keys, and with [Usage] migrated the user's usage
// counts and quota alert claims (keyed by the decimal user id; the meter
// event outbox is kept as billing history). The customer links go with the user, so
// webhooks about those customers no longer reach any user. The expiry and
// leak notices claimed for the user's keys go with the keys.
//
// The user's security log ([Audit]) is kept: its events are the record of
// what happened to the account, and the one that says it was deleted
// (audit.AccountDeleted, appended after DeleteUser returns) must outlive
// it. They name the user by id, never by address; they leave the log
// when [Store.PruneAuditEvents] reaches them (the audit.Log's retention).
func (s *Store) DeleteUser(ctx context.Context, id int64, opts DeleteUserOptions) (found bool, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		q := `SELECT email FROM users WHERE id = ?`
		if s.dialect.Name == DialectPostgres {
			q += ` FOR UPDATE`
		}
		var email string
		if found, err = isFound(tx.GetContext(ctx, &email, tx.Rebind(q), id)); !found {
			return err
		}
		migrated, err := migratedVersions(ctx, tx)
		if err != nil {
			return err
		}
		if migrated[Plans] > 0 {
			// The overrides and quota usage of the user and of their keys.
			user := plan.Identity{Budget: plan.PerUser, ID: strconv.FormatInt(id, 10)}.String()
			for _, table := range []string{"plan_overrides", "plan_usage"} {
				if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM `+table+` WHERE identity = ?`), user); err != nil {
					return err
				}
				if migrated[Keys] > 0 {
					if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM `+table+` WHERE identity IN
						(SELECT 'key:' || id FROM api_keys WHERE user_id = ?)`), id); err != nil {
						return err
					}
				}
			}
		}
		if migrated[Usage] > 0 {
			// Usage counts and alert claims; the meter event outbox is
			// billing history and is kept (its pending events are still
			// owed to Stripe).
			user := strconv.FormatInt(id, 10)
			for _, table := range []string{"usage_hourly", "usage_daily", "usage_alerts"} {
				if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM `+table+` WHERE user_id = ?`), user); err != nil {
					return err
				}
			}
		}
		var stmts []string
		if migrated[Keys] > 1 {
			// The foreign key cascades too; this does not rely on it.
			stmts = append(stmts, `DELETE FROM api_key_notices WHERE key_id IN (SELECT id FROM api_keys WHERE user_id = ?)`)
		}
		if migrated[Keys] > 0 {
			stmts = append(stmts, `DELETE FROM api_keys WHERE user_id = ?`)
		}
		if migrated[Login] > 0 {
			stmts = append(stmts, `DELETE FROM sessions WHERE user_id = ?`)
		}
		if migrated[Login] > 1 {
			stmts = append(stmts, `DELETE FROM email_changes WHERE user_id = ?`)
		}
		if migrated[Billing] > 0 {
			if opts.DeleteSubscriptions {
				stmts = append(stmts, `DELETE FROM billing_subscriptions WHERE customer_id IN
					(SELECT customer_id FROM billing_customers WHERE user_id = ?)`)
			}
			stmts = append(stmts, `DELETE FROM billing_checkout_sessions WHERE user_id = ?`,
				`DELETE FROM billing_customers WHERE user_id = ?`)
		}
		stmts = append(stmts, `DELETE FROM users WHERE id = ?`)
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, tx.Rebind(q), id); err != nil {
				return err
			}
		}
		if migrated[Login] > 0 {
			_, err = tx.ExecContext(ctx, tx.Rebind(`DELETE FROM login_tokens WHERE email = ?`), normEmail(email))
		}
		return err
	})
	return found, err
}

// migratedVersions returns the latest version migrated of each feature.
func migratedVersions(ctx context.Context, q sqlx.QueryerContext) (map[Feature]int, error) {
	var rows []struct {
		Scope   string `db:"scope"`
		Version int    `db:"version"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, `SELECT scope, MAX(version) AS version FROM schema_migrations
		WHERE scope LIKE 'apikit/%' GROUP BY scope`); err != nil {
		return nil, err
	}
	m := make(map[Feature]int, len(rows))
	for _, r := range rows {
		m[Feature(strings.TrimPrefix(r.Scope, legacyScope+"/"))] = r.Version
	}
	return m, nil
}
