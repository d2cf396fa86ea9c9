package pgbus_test

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/bustest"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/invalidate/pgbus"
)

func TestConformance(t *testing.T) {
	base := testenv.Postgres(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, u.Host, func(t *testing.T, channel, addr string) *invalidate.Hub {
		db, err := sql.Open("postgres", base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		lu := *u
		lu.Host = addr
		h, err := pgbus.New(db, lu.String(), pgbus.Options{Channel: channel, Hub: invalidate.Options{MaxPending: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h.Close(ctx)
		})
		return h
	})
}

func TestChannelTooLong(t *testing.T) {
	if _, err := pgbus.New(&sql.DB{}, "", pgbus.Options{Channel: string(make([]byte, 64))}); err == nil {
		t.Error("a 64-byte channel was accepted")
	}
}
