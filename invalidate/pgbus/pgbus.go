// Package pgbus is an [invalidate.Hub] over PostgreSQL LISTEN/NOTIFY
// (through github.com/lib/pq): messages are sent with pg_notify on the
// application's pool, and received on one connection of the Hub's own.
//
// The listening connection must be a session of its own: LISTEN does not
// survive a pooler in transaction mode. Behind PgBouncer in transaction
// mode, give [New] a URL that reaches PostgreSQL directly (or a pool in
// session mode); sending works through either.
//
// NOTIFY channels are database-wide: every schema and every application
// on the database shares them, so give each application (and each test) a
// channel of its own ([Options.Channel]).
package pgbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/apikit/apikit/invalidate"
	"github.com/lib/pq"
)

// DefaultChannel is the NOTIFY channel used when [Options.Channel] is
// empty.
const DefaultChannel = "apikit_invalidate"

// maxMessage is under PostgreSQL's 8000-byte NOTIFY payload limit.
const maxMessage = 7900

// Options configures the bus.
type Options struct {
	// Channel is the NOTIFY channel (default [DefaultChannel]); at most 63
	// bytes.
	Channel string
	// Hub configures the Hub: pings, backoff, bounds, logger.
	Hub invalidate.Options
}

// New returns a Hub that sends through db (any pool, a transaction-mode
// pooler included) and listens on its own connection to listenDSN (a URL
// or key=value string that lib/pq accepts, reaching PostgreSQL in session
// mode). The listening connection is opened by the first Subscribe, so a
// program that only publishes needs none.
func New(db *sql.DB, listenDSN string, opts Options) (*invalidate.Hub, error) {
	if db == nil {
		return nil, errors.New("pgbus: New with a nil *sql.DB")
	}
	if opts.Channel == "" {
		opts.Channel = DefaultChannel
	}
	if len(opts.Channel) > 63 {
		return nil, fmt.Errorf("pgbus: channel %q longer than 63 bytes", opts.Channel)
	}
	return invalidate.New(&transport{db: db, dsn: listenDSN, channel: opts.Channel}, opts.Hub), nil
}

type transport struct {
	db      *sql.DB
	dsn     string
	channel string
}

func (t *transport) MaxMessage() int { return maxMessage }

func (t *transport) Send(ctx context.Context, msg string) error {
	_, err := t.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, t.channel, msg)
	return err
}

func (t *transport) Listen(ctx context.Context) (invalidate.Listener, error) {
	type result struct {
		l   *listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		l := &listener{notes: make(chan *pq.Notification, 64), pongs: make(chan error, 1)}
		lc, err := pq.NewListenerConn(t.dsn, l.notes)
		if err != nil {
			done <- result{err: err}
			return
		}
		l.lc = lc
		if _, err := lc.Listen(t.channel); err != nil {
			lc.Close()
			done <- result{err: err}
			return
		}
		done <- result{l: l}
	}()
	select {
	case r := <-done:
		return r.l, r.err
	case <-ctx.Done():
		go func() { // close whatever the attempt opens
			if r := <-done; r.l != nil {
				r.l.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

type listener struct {
	lc    *pq.ListenerConn
	notes chan *pq.Notification
	pongs chan error
}

func (l *listener) Receive(ctx context.Context) (string, error) {
	select {
	case n, ok := <-l.notes:
		if !ok {
			if err := l.lc.Err(); err != nil {
				return "", err
			}
			return "", errors.New("pgbus: connection closed")
		}
		if n == nil {
			return "", nil
		}
		return n.Extra, nil
	case err := <-l.pongs:
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Ping runs an empty query on the listening connection in the background;
// its answer (or failure) comes back through Receive. Pinging in the
// background keeps notifications flowing meanwhile, and a ping that never
// returns (a silent network) is cut by Close.
func (l *listener) Ping() {
	go func() {
		err := l.lc.Ping()
		select {
		case l.pongs <- err:
		default:
		}
	}()
}

func (l *listener) Close() error { return l.lc.Close() }
