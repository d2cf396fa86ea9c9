package storetest

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/magiclink"
)

func mustCodeToken(t *testing.T, b Backend, name, email, code string, ttl time.Duration) {
	t.Helper()
	if err := b.CreateLoginToken(conformance.Context(t), magiclink.LoginToken{
		Hash: mlHash(name), Email: email, CreatedAt: epoch, ExpiresAt: epoch.Add(ttl),
		NonceHash: mlHash("nonce:" + name), CodeHash: mlHash("code:" + code),
	}); err != nil {
		t.Fatalf("CreateLoginToken(%s): %v", name, err)
	}
}

type codeResult struct {
	email    string
	ok, void bool
}

func consumeCode(t *testing.T, b Backend, name, code string, at time.Time) codeResult {
	t.Helper()
	email, ok, void, err := b.ConsumeLoginCode(conformance.Context(t), mlHash("nonce:"+name), mlHash("code:"+code), 5, at)
	if err != nil {
		t.Fatalf("ConsumeLoginCode(%s, %s): %v", name, code, err)
	}
	return codeResult{email, ok, void}
}

func testLoginCode(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("RightCodeOnce", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "Ada@Example.com", "12345678", 15*time.Minute)
		if got := consumeCode(t, b, "t1", "12345678", epoch.Add(time.Minute)); !got.ok || got.void || got.email != "ada@example.com" {
			t.Fatalf("right code = %+v, want ok for ada@example.com", got)
		}
		if got := consumeCode(t, b, "t1", "12345678", epoch.Add(time.Minute)); got.ok {
			t.Fatal("the code worked twice")
		}
		if _, ok, err := b.ConsumeLoginToken(conformance.Context(t), mlHash("t1"), epoch.Add(time.Minute)); err != nil || ok {
			t.Fatalf("the link after the code: ok=%v err=%v, want refused", ok, err)
		}
	})
	t.Run("LinkKillsCode", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "ada@example.com", "12345678", 15*time.Minute)
		if _, ok, err := b.ConsumeLoginToken(conformance.Context(t), mlHash("t1"), epoch); err != nil || !ok {
			t.Fatalf("link: ok=%v err=%v", ok, err)
		}
		if got := consumeCode(t, b, "t1", "12345678", epoch); got.ok {
			t.Fatal("the code worked after the link")
		}
	})
	t.Run("WrongNonceOrExpired", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "ada@example.com", "12345678", 15*time.Minute)
		if got := consumeCode(t, b, "other", "12345678", epoch); got.ok {
			t.Fatal("the code worked with another nonce")
		}
		if got := consumeCode(t, b, "t1", "12345678", epoch.Add(15*time.Minute)); got.ok {
			t.Fatal("the code worked at expiry")
		}
		if _, ok, _, err := b.ConsumeLoginCode(conformance.Context(t), nil, mlHash("code:12345678"), 5, epoch); err != nil || ok {
			t.Fatalf("nil nonce: ok=%v err=%v", ok, err)
		}
		// A token without a code (SendLink) has no nonce either.
		mustLoginToken(t, b, "plain", "bob@example.com", epoch, 15*time.Minute)
		if got := consumeCode(t, b, "plain", "12345678", epoch); got.ok {
			t.Fatal("a token without a code was spent by a code")
		}
	})
	t.Run("FiveWrongVoid", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "ada@example.com", "12345678", 15*time.Minute)
		for i := 1; i <= 5; i++ {
			got := consumeCode(t, b, "t1", "00000000", epoch)
			if got.ok || got.void != (i == 5) {
				t.Fatalf("wrong code %d = %+v, want void only at 5", i, got)
			}
		}
		if got := consumeCode(t, b, "t1", "12345678", epoch); got.ok {
			t.Fatal("the right code worked after 5 wrong ones")
		}
		if _, ok, err := b.ConsumeLoginToken(conformance.Context(t), mlHash("t1"), epoch); err != nil || ok {
			t.Fatalf("the link after 5 wrong codes: ok=%v err=%v, want refused", ok, err)
		}
	})
	t.Run("RightOnLastAttempt", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "ada@example.com", "12345678", 15*time.Minute)
		for range 4 {
			consumeCode(t, b, "t1", "00000000", epoch)
		}
		if got := consumeCode(t, b, "t1", "12345678", epoch); !got.ok {
			t.Fatalf("right code on the 5th attempt = %+v, want ok", got)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		b := newBackend(t)
		mustCodeToken(t, b, "t1", "ada@example.com", "12345678", 15*time.Minute)
		var wins, voids atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-start
				code := "00000000"
				if i%2 == 0 {
					code = "12345678"
				}
				email, ok, void, err := b.ConsumeLoginCode(conformance.Context(t), mlHash("nonce:t1"), mlHash("code:"+code), 5, epoch)
				if err != nil {
					t.Errorf("ConsumeLoginCode: %v", err)
				}
				if ok {
					wins.Add(1)
					if email != "ada@example.com" {
						t.Errorf("email = %q", email)
					}
				}
				if void {
					voids.Add(1)
				}
			})
		}
		close(start)
		if _, ok, err := b.ConsumeLoginToken(conformance.Context(t), mlHash("t1"), epoch); err != nil {
			t.Errorf("ConsumeLoginToken: %v", err)
		} else if ok {
			wins.Add(1)
		}
		wg.Wait()
		// Twenty attempts against a limit of five spend the token: it is
		// won once, or voided by the fifth wrong code, never neither.
		if w, v := wins.Load(), voids.Load(); w > 1 || w == 0 && v == 0 {
			t.Fatalf("%d callers spent one token, %d voided it; want 1 winner, or none and the token voided", w, v)
		}
	})
}

func testSessionDetails(t *testing.T, newBackend func(t *testing.T) Backend) {
	b := newBackend(t)
	ctx := conformance.Context(t)
	ada, bob := mustUser(t, b, "ada@example.com"), mustUser(t, b, "bob@example.com")
	long := strings.Repeat("é", 300)
	for i, name := range []string{"s1", "s2", "s3"} {
		se := magiclink.Session{Hash: mlHash(name), UserID: ada, CreatedAt: epoch.Add(time.Duration(i) * time.Minute),
			ExpiresAt: epoch.Add(time.Hour), UserAgent: "  Firefox " + name + " ", IP: "192.0.2." + name[1:]}
		if name == "s3" {
			se.UserAgent = long
		}
		if err := b.CreateSession(ctx, se); err != nil {
			t.Fatal(err)
		}
	}
	mustSession(t, b, "bob1", bob, epoch, time.Hour)
	got, err := b.UserSessions(ctx, ada)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].Hash) != string(mlHash("s3")) || string(got[2].Hash) != string(mlHash("s1")) {
		t.Fatalf("UserSessions = %d sessions, want s3, s2, s1", len(got))
	}
	if got[2].UserAgent != "Firefox s1" || got[2].IP != "192.0.2.1" || got[2].Email != "ada@example.com" ||
		!got[2].CreatedAt.Equal(epoch) || !got[2].LastSeenAt.Equal(epoch) {
		t.Fatalf("s1 = %+v", got[2])
	}
	if n := len([]rune(got[0].UserAgent)); n != 256 {
		t.Fatalf("a 300-character user agent is stored with %d characters, want 256", n)
	}
	if se, _, _ := b.Session(ctx, mlHash("s2")); se.UserAgent != "Firefox s2" || se.IP != "192.0.2.2" {
		t.Fatalf("Session(s2) = %+v", se)
	}
	// Only the user's own session is deleted by hash.
	if found, err := b.DeleteUserSession(ctx, bob, mlHash("s1")); err != nil || found {
		t.Fatalf("bob deleting ada's session: found=%v err=%v", found, err)
	}
	if found, err := b.DeleteUserSession(ctx, ada, mlHash("s1")); err != nil || !found {
		t.Fatalf("DeleteUserSession: found=%v err=%v", found, err)
	}
	if n, err := b.DeleteUserSessionsExcept(ctx, ada, mlHash("s3")); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessionsExcept = %d, %v, want 1", n, err)
	}
	if !hasSession(t, b, "s3") || hasSession(t, b, "s2") || !hasSession(t, b, "bob1") {
		t.Fatal("wrong sessions left")
	}
	if got, err := b.UserSessions(ctx, 999999); err != nil || len(got) != 0 {
		t.Fatalf("UserSessions(unknown) = %v, %v", got, err)
	}
}
