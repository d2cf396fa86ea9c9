package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// refusingDriver is a database/sql driver whose connections refuse to
// prepare and answer every text query with errText, counting prepares.
type refusingDriver struct{ prepares atomic.Int64 }

var errText = errors.New("text query")

func (d *refusingDriver) Open(string) (driver.Conn, error) { return refusingConn{d}, nil }

type refusingConn struct{ d *refusingDriver }

func (c refusingConn) Prepare(string) (driver.Stmt, error) {
	c.d.prepares.Add(1)
	return nil, errors.New("prepare refused")
}
func (refusingConn) Close() error              { return nil }
func (refusingConn) Begin() (driver.Tx, error) { return nil, errors.New("no transactions") }
func (refusingConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return nil, errText
}

// A database that refuses to prepare costs one prepare attempt per
// prepareRetry, not one per request, however many requests run at once:
// the others run the query as text.
func TestPreparedFailureIsNotRetriedPerCall(t *testing.T) {
	d := &refusingDriver{}
	db := sql.OpenDB(driverConnector{d})
	t.Cleanup(func() { db.Close() })
	p := prepared{db: db, query: "SELECT 1", prepare: true}
	ctx := context.Background()

	if err := p.scanRow(ctx, 1, new(int)); !errors.Is(err, errText) {
		t.Fatalf("first call: %v, want the text query's error", err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := p.scanRow(ctx, 1, new(int)); !errors.Is(err, errText) {
				t.Errorf("later call: %v, want the text query's error", err)
			}
		})
	}
	wg.Wait()
	if n := d.prepares.Load(); n != 1 {
		t.Errorf("%d prepare attempts within prepareRetry, want 1", n)
	}

	p.retryAt.Store(0) // prepareRetry has passed
	p.scanRow(ctx, 1, new(int))
	if n := d.prepares.Load(); n != 2 {
		t.Errorf("%d prepare attempts after prepareRetry, want 2", n)
	}
}

type driverConnector struct{ d *refusingDriver }

func (c driverConnector) Connect(context.Context) (driver.Conn, error) { return refusingConn(c), nil }
func (c driverConnector) Driver() driver.Driver                        { return c.d }

// ctxDriver's connections answer every query with one row holding 1, and
// record the context each query ran in.
type ctxDriver struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (d *ctxDriver) Open(string) (driver.Conn, error) { return ctxConn{d}, nil }

type ctxConn struct{ d *ctxDriver }

func (ctxConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not prepared") }
func (ctxConn) Close() error                        { return nil }
func (ctxConn) Begin() (driver.Tx, error)           { return nil, errors.New("no transactions") }
func (c ctxConn) QueryContext(ctx context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	c.d.mu.Lock()
	c.d.ctxs = append(c.d.ctxs, ctx)
	c.d.mu.Unlock()
	if len(args) == 1 && args[0].Value == "none" {
		return &oneRow{done: true}, nil
	}
	return &oneRow{}, nil
}

type oneRow struct{ done bool }

func (*oneRow) Columns() []string { return []string{"n"} }
func (*oneRow) Close() error      { return nil }
func (r *oneRow) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done, dest[0] = true, int64(1)
	return nil
}

type ctxConnector struct{ d *ctxDriver }

func (c ctxConnector) Connect(context.Context) (driver.Conn, error) { return ctxConn(c), nil }
func (c ctxConnector) Driver() driver.Driver                        { return c.d }

// scanRow reads one row as Row.Scan does. Detached (SQLite's hot
// queries), the query gets the caller's values without its cancellation,
// and a context that has already ended stops it before it runs; attached
// (PostgreSQL's), the query gets the caller's context.
func TestScanRow(t *testing.T) {
	type key struct{}
	for _, detach := range []bool{false, true} {
		d := &ctxDriver{}
		db := sql.OpenDB(ctxConnector{d})
		t.Cleanup(func() { db.Close() })
		p := prepared{db: db, query: "SELECT n", detach: detach}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "span"))

		var n int
		if err := p.scanRow(ctx, "one", &n); err != nil || n != 1 {
			t.Fatalf("detach=%v: scanRow = %d, %v; want 1, nil", detach, n, err)
		}
		if err := p.scanRow(ctx, "none", &n); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("detach=%v: no row: %v, want sql.ErrNoRows", detach, err)
		}
		d.mu.Lock()
		got := d.ctxs[0]
		d.mu.Unlock()
		if got.Value(key{}) != "span" {
			t.Errorf("detach=%v: the query's context lost the caller's values", detach)
		}
		if cancellable := got.Done() != nil; cancellable == detach {
			t.Errorf("detach=%v: the query's context is cancellable: %v", detach, cancellable)
		}

		cancel()
		before := len(d.ctxs)
		if err := p.scanRow(ctx, "one", &n); !errors.Is(err, context.Canceled) {
			t.Errorf("detach=%v: ended context: %v, want context.Canceled", detach, err)
		}
		if detach && len(d.ctxs) != before {
			t.Errorf("detached: a query ran for a context that had ended")
		}
	}
}
