package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
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

	if err := p.queryRow(ctx).Scan(new(int)); !errors.Is(err, errText) {
		t.Fatalf("first call: %v, want the text query's error", err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := p.queryRow(ctx).Scan(new(int)); !errors.Is(err, errText) {
				t.Errorf("later call: %v, want the text query's error", err)
			}
		})
	}
	wg.Wait()
	if n := d.prepares.Load(); n != 1 {
		t.Errorf("%d prepare attempts within prepareRetry, want 1", n)
	}

	p.retryAt.Store(0) // prepareRetry has passed
	p.queryRow(ctx).Scan(new(int))
	if n := d.prepares.Load(); n != 2 {
		t.Errorf("%d prepare attempts after prepareRetry, want 2", n)
	}
}

type driverConnector struct{ d *refusingDriver }

func (c driverConnector) Connect(context.Context) (driver.Conn, error) { return refusingConn(c), nil }
func (c driverConnector) Driver() driver.Driver                        { return c.d }
