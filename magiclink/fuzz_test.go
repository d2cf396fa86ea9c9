package magiclink_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
)

// FuzzRequestHandler posts arbitrary bodies to POST /login: the answer is
// always a deliberate 200 (202 for JSON), 400, 413 or 503, and only normalised addresses
// reach the mail queue.
func FuzzRequestHandler(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "email=ada%40example.com"},
		{"application/x-www-form-urlencoded", "email=ada%40example.com%0d%0aBcc%3a+eve%40example.com"},
		{"application/x-www-form-urlencoded", "email=%ff%fe&email=x"},
		{"application/json", `{"email":"Ada@Example.com"}`},
		{"application/json", `{"email":["a"]}`},
		{"application/json; charset=utf-8", `{"email":"\u0430da@example.com"}`},
		{"text/plain", "ada@example.com"},
		{"multipart/form-data; boundary=x", "--x\r\n"},
	} {
		f.Add(seed.ct, seed.body)
	}
	var queued []string
	svc, err := magiclink.New(testdb.SQLite(f), magiclink.Options{
		BaseURL:     "https://api.example.com",
		Mailer:      magiclink.MailerFunc(func(context.Context, magiclink.Message) error { return nil }),
		SendLimiter: magiclink.LimiterFunc(func(_ context.Context, email string) (bool, error) { queued = append(queued, email); return true, nil }),
		Workers:     1,
		// Every input comes from one client: the per-client limits (tested
		// elsewhere) would refuse most of them.
		SendClientLimiter: magiclink.LimiterFunc(func(context.Context, string) (bool, error) { return true, nil }),
		QueuePerClient:    1 << 30,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Close(context.Background()) })
	h := svc.RequestHandler()
	f.Fuzz(func(t *testing.T, contentType, body string) {
		queued = queued[:0]
		req := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted, http.StatusServiceUnavailable: // 503: the queue is full
			if len(queued) != 1 {
				t.Fatalf("%d: %d addresses reached the limiter", rec.Code, len(queued))
			}
			if n, err := emailaddr.Normalize(queued[0]); err != nil || n != queued[0] {
				t.Fatalf("queued %q, which is not a normalised address", queued[0])
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(queued) != 0 {
				t.Fatalf("a refused request reached the limiter with %q", queued)
			}
		default:
			t.Fatalf("status %d for %q %q:\n%s", rec.Code, contentType, body, rec.Body)
		}
	})
}
