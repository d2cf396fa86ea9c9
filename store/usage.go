package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/usage"
	"github.com/jmoiron/sqlx"
)

// The store keeps package usage's counts and alert claims (migrate
// [Usage]).
var (
	_ usage.Store      = (*Store)(nil)
	_ usage.Maintainer = (*Store)(nil)
	_ usage.AlertStore = (*Store)(nil)
)

// countsChunk is the most rows one INSERT of usage counts writes. On
// SQLite a row is eight parameters: 4,000 a statement (the limit is
// 32,766). On PostgreSQL the rows travel as eight array parameters
// (unnest), so a statement's size does not grow its plan.
func (s *Store) countsChunk() int {
	if s.dialect.Name == DialectPostgres {
		return 5000
	}
	return 500
}

// countKey names one row of usage_hourly or usage_daily.
type countKey struct {
	user, key string
	start     int64
}

// sumCounts adds up the counts of each row, refusing invalid entries.
func sumCounts(counts []usage.Count, unit int64) (map[countKey]usage.Counts, error) {
	sums := make(map[countKey]usage.Counts, len(counts))
	for _, c := range counts {
		start := c.Start.Unix()
		if c.UserID == "" || start%unit != 0 {
			return nil, fmt.Errorf("store: invalid usage count (user %q, start %v)", c.UserID, c.Start)
		}
		if c.Counts.IsZero() {
			continue
		}
		k := countKey{c.UserID, c.KeyID, start}
		s := sums[k]
		s.Add(c.Counts)
		sums[k] = s
	}
	return sums, nil
}

// upsertCounts adds sums to table (usage_hourly or usage_daily, whose time
// column is col) in statements of countsChunk rows, in a fixed order so
// that concurrent writers cannot deadlock.
func upsertCounts(ctx context.Context, tx *sqlx.Tx, chunk int, table, col string, sums map[countKey]usage.Counts) error {
	keys := make([]countKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b countKey) int {
		return cmp.Or(strings.Compare(a.user, b.user), cmp.Compare(a.start, b.start), strings.Compare(a.key, b.key))
	})
	update := ` ON CONFLICT (user_id, ` + col + `, key_id) DO UPDATE SET ok = ` + table + `.ok + excluded.ok,
		client_error = ` + table + `.client_error + excluded.client_error,
		rate_limited = ` + table + `.rate_limited + excluded.rate_limited,
		server_error = ` + table + `.server_error + excluded.server_error,
		cost = ` + table + `.cost + excluded.cost`
	insert := `INSERT INTO ` + table + ` (user_id, key_id, ` + col + `, ok, client_error, rate_limited, server_error, cost) `
	postgres := tx.DriverName() == "postgres"
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		var q string
		var args []any
		if postgres {
			q, args = insert+`SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[])`+update,
				countArrays(keys[:n], sums)
		} else {
			var b strings.Builder
			b.WriteString(insert + `VALUES `)
			args = make([]any, 0, 8*n)
			for i, k := range keys[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
				c := sums[k]
				args = append(args, k.user, k.key, k.start, c.OK, c.ClientError, c.Limited, c.ServerError, c.Cost)
			}
			b.WriteString(update)
			q = b.String()
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(q), args...); err != nil {
			return fmt.Errorf("store: adding usage counts: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// countArrays returns the columns of the rows keys as eight PostgreSQL
// array literals, for unnest.
func countArrays(keys []countKey, sums map[countKey]usage.Counts) []any {
	var cols [8]strings.Builder
	for i := range cols {
		cols[i].WriteByte('{')
	}
	for i, k := range keys {
		if i > 0 {
			for j := range cols {
				cols[j].WriteByte(',')
			}
		}
		c := sums[k]
		quoteArrayElem(&cols[0], k.user)
		quoteArrayElem(&cols[1], k.key)
		for j, v := range []int64{k.start, c.OK, c.ClientError, c.Limited, c.ServerError, c.Cost} {
			cols[2+j].WriteString(strconv.FormatInt(v, 10))
		}
	}
	args := make([]any, len(cols))
	for i := range cols {
		cols[i].WriteByte('}')
		args[i] = cols[i].String()
	}
	return args
}

// quoteArrayElem writes s as a double-quoted element of an array literal.
func quoteArrayElem(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}

// AddCounts implements [usage.Store]: in one transaction it records
// batch.ID and adds the counts to usage_hourly with additive upserts, in
// statements of up to 500 rows (2,000 on PostgreSQL); a batch whose id is recorded already
// changes nothing. Counts must start on whole hours.
func (s *Store) AddCounts(ctx context.Context, batch usage.Batch) error {
	if batch.ID == "" || len(batch.ID) > 64 {
		return fmt.Errorf("store: AddCounts: invalid batch id %q", batch.ID)
	}
	sums, err := sumCounts(batch.Counts, 3600)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO usage_batches (batch_id, applied_at) VALUES (?, ?)
			ON CONFLICT (batch_id) DO NOTHING`), batch.ID, batch.At.Unix())
		if ok, err := affected(res, err); err != nil || !ok {
			return err // applied before: nothing to do
		}
		return upsertCounts(ctx, tx, s.countsChunk(), "usage_hourly", "hour", sums)
	})
}

type countRow struct {
	KeyID       string `db:"key_id"`
	Start       int64  `db:"start"`
	OK          int64  `db:"ok"`
	ClientError int64  `db:"client_error"`
	Limited     int64  `db:"rate_limited"`
	ServerError int64  `db:"server_error"`
	Cost        int64  `db:"cost"`
}

// Counts implements [usage.Store].
func (s *Store) Counts(ctx context.Context, q usage.Query) ([]usage.Count, error) {
	if q.UserID == "" || (q.Granularity != usage.Hour && q.Granularity != usage.Day) {
		return nil, fmt.Errorf("store: Counts: invalid query (user %q, granularity %v)", q.UserID, q.Granularity)
	}
	from, to := q.From.Unix(), q.To.Unix()
	hourStart := "hour"
	if q.Granularity == usage.Day {
		hourStart = "hour - (hour % 86400)"
	}
	keyCond := ""
	args := []any{q.UserID, from, to}
	if q.KeyID != "" {
		keyCond = " AND key_id = ?"
		args = append(args, q.KeyID)
	}
	args = append(args, args...)
	var rows []countRow
	err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT key_id, `+hourStart+` AS start,
		SUM(ok) AS ok, SUM(client_error) AS client_error, SUM(rate_limited) AS rate_limited,
		SUM(server_error) AS server_error, SUM(cost) AS cost
		FROM usage_hourly WHERE user_id = ? AND hour >= ? AND hour < ?`+keyCond+`
		GROUP BY key_id, `+hourStart+`
		UNION ALL
		SELECT key_id, day AS start, ok, client_error, rate_limited, server_error, cost
		FROM usage_daily WHERE user_id = ? AND day >= ? AND day < ?`+keyCond), args...)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rows, func(a, b countRow) int {
		return cmp.Or(strings.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Start, b.Start))
	})
	out := make([]usage.Count, 0, len(rows))
	for _, r := range rows {
		c := usage.Counts{OK: r.OK, ClientError: r.ClientError, Limited: r.Limited, ServerError: r.ServerError, Cost: r.Cost}
		if n := len(out); n > 0 && out[n-1].KeyID == r.KeyID && out[n-1].Start.Unix() == r.Start {
			out[n-1].Counts.Add(c)
			continue
		}
		out = append(out, usage.Count{UserID: q.UserID, KeyID: r.KeyID, Start: time.Unix(r.Start, 0).UTC(), Counts: c})
	}
	return out, nil
}

// RollupCounts implements [usage.Maintainer]: day by day, each in a
// transaction, it deletes the hourly rows of the day (DELETE …
// RETURNING, so that concurrent calls move each row once) and adds them
// to usage_daily. before is rounded down to a UTC midnight.
func (s *Store) RollupCounts(ctx context.Context, before time.Time) (int64, error) {
	end := usage.Day.Truncate(before).Unix()
	var moved int64
	for {
		var first *int64
		if err := s.db.GetContext(ctx, &first, s.db.Rebind(`SELECT MIN(hour) FROM usage_hourly WHERE hour < ?`), end); err != nil {
			return moved, err
		}
		if first == nil {
			return moved, nil
		}
		day := *first - (*first % 86400)
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			var rows []struct {
				UserID string `db:"user_id"`
				countRow
			}
			if err := tx.SelectContext(ctx, &rows, tx.Rebind(`DELETE FROM usage_hourly WHERE hour >= ? AND hour < ?
				RETURNING user_id, key_id, hour AS start, ok, client_error, rate_limited, server_error, cost`), day, day+86400); err != nil {
				return err
			}
			sums := make(map[countKey]usage.Counts)
			for _, r := range rows {
				k := countKey{r.UserID, r.KeyID, day}
				c := sums[k]
				c.Add(usage.Counts{OK: r.OK, ClientError: r.ClientError, Limited: r.Limited, ServerError: r.ServerError, Cost: r.Cost})
				sums[k] = c
			}
			moved += int64(len(rows))
			return upsertCounts(ctx, tx, s.countsChunk(), "usage_daily", "day", sums)
		})
		if err != nil {
			return moved, fmt.Errorf("store: rolling up the usage of %s: %w", time.Unix(day, 0).UTC().Format(time.DateOnly), err)
		}
	}
}

// PruneCounts implements [usage.Maintainer].
func (s *Store) PruneCounts(ctx context.Context, before, batchesBefore time.Time) (int64, error) {
	n, err := rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM usage_daily WHERE day < ?`), before.Unix()))
	if err != nil {
		return n, err
	}
	m, err := rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM usage_batches WHERE applied_at < ?`), batchesBefore.Unix()))
	return n + m, err
}

// ClaimAlert implements [usage.AlertStore] with an insert that does
// nothing if the alert is claimed already.
func (s *Store) ClaimAlert(ctx context.Context, userID string, periodStart time.Time, threshold int) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO usage_alerts (user_id, period_start, threshold)
		VALUES (?, ?, ?) ON CONFLICT (user_id, period_start, threshold) DO NOTHING`),
		userID, periodStart.Unix(), threshold))
}

// ReleaseAlert implements [usage.AlertStore].
func (s *Store) ReleaseAlert(ctx context.Context, userID string, periodStart time.Time, threshold int) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM usage_alerts WHERE user_id = ? AND period_start = ? AND threshold = ?`),
		userID, periodStart.Unix(), threshold)
	return err
}

// PruneAlerts deletes the claims of alerts of periods that started
// before the given time, and returns how many it deleted.
func (s *Store) PruneAlerts(ctx context.Context, before time.Time) (int64, error) {
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM usage_alerts WHERE period_start < ?`), before.Unix()))
}
