package usage_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
)

// identity reads the demo identity from headers, as apikey's principal
// would be read in an application.
func identity(r *http.Request) (keyID, userID string, ok bool) {
	k, u := r.Header.Get("X-Key"), r.Header.Get("X-User")
	return k, u, k != ""
}

func TestMiddleware(t *testing.T) {
	s := newMemStore()
	now := t0
	m := newMeter(t, s, usage.Options{Now: func() time.Time { return now }})
	mw := m.Middleware(usage.MiddlewareOptions{
		Identity: identity,
		Cost: func(r *http.Request) int64 {
			if r.Method == http.MethodPost {
				return 5
			}
			return 1
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) })
	mux.HandleFunc("POST /ok", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("GET /silent", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /limited", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	mux.HandleFunc("GET /export", func(w http.ResponseWriter, r *http.Request) { usage.SetCost(r.Context(), 12) })
	mux.HandleFunc("GET /early", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	h := mw(mux)
	call := func(method, path string, authed bool) int {
		r := httptest.NewRequest(method, path, nil)
		if authed {
			r.Header.Set("X-Key", "k1")
			r.Header.Set("X-User", "1")
		}
		w := httptest.NewRecorder()
		func() {
			defer func() { _ = recover() }()
			h.ServeHTTP(w, r)
		}()
		return w.Code
	}
	call("GET", "/ok", true)      // ok, 1
	call("POST", "/ok", true)     // ok, 5
	call("GET", "/silent", true)  // ok, 1
	call("GET", "/missing", true) // 404: client error, 1
	call("GET", "/limited", true) // 429: limited, 0
	call("GET", "/fail", true)    // 502: server error, 1
	call("GET", "/export", true)  // ok, 12 (SetCost)
	call("GET", "/early", true)   // 202 after 103: ok, 1
	call("GET", "/panic", true)   // server error, 1
	call("GET", "/ok", false)     // not counted
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := usage.Counts{OK: 5, ClientError: 1, Limited: 1, ServerError: 2, Cost: 1 + 5 + 1 + 1 + 0 + 1 + 12 + 1 + 1}
	if got := s.total("1"); got != want {
		t.Errorf("counted %+v; want %+v", got, want)
	}
	if got := s.total(""); !got.IsZero() {
		t.Errorf("an unauthenticated request was counted: %+v", got)
	}
}

// hijackFlusher is a ResponseWriter that can flush and hijack.
type hijackFlusher struct {
	*httptest.ResponseRecorder
	hijacked bool
}

func (h *hijackFlusher) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	return nil, nil, nil
}

// The wrapped ResponseWriter keeps flushing, hijacking and ReadFrom,
// directly and through http.ResponseController.
func TestMiddlewareKeepsWriterCapabilities(t *testing.T) {
	m := newMeter(t, newMemStore(), usage.Options{})
	var (
		flushErr, hijackErr error
		isFlusher, isRF     bool
		copied              int64
	)
	h := m.Middleware(usage.MiddlewareOptions{Identity: identity})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, isFlusher = w.(http.Flusher)
		var rf io.ReaderFrom
		rf, isRF = w.(io.ReaderFrom)
		if isRF {
			copied, _ = rf.ReadFrom(strings.NewReader("body"))
		}
		rc := http.NewResponseController(w)
		flushErr = rc.Flush()
		_, _, hijackErr = rc.Hijack()
	}))
	inner := &hijackFlusher{ResponseRecorder: httptest.NewRecorder()}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Key", "k")
	h.ServeHTTP(inner, r)
	if !isFlusher || flushErr != nil || !inner.Flushed {
		t.Errorf("flush: Flusher %v, err %v, flushed %v", isFlusher, flushErr, inner.Flushed)
	}
	if hijackErr != nil || !inner.hijacked {
		t.Errorf("hijack through ResponseController: %v, hijacked %v", hijackErr, inner.hijacked)
	}
	if !isRF || copied != 4 || inner.Body.String() != "body" {
		t.Errorf("ReadFrom: %v, copied %d, body %q", isRF, copied, inner.Body.String())
	}
}

// TestMiddlewareWriteString: io.WriteString through the middleware's
// writer writes the string without copying it when the wrapped writer
// can (net/http's can), and records the status.
func TestMiddlewareWriteString(t *testing.T) {
	st := newMemStore()
	m := newMeter(t, st, usage.Options{})
	var isSW bool
	h := m.Middleware(usage.MiddlewareOptions{Identity: identity})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, isSW = w.(io.StringWriter)
		io.WriteString(w, "hello")
	}))
	for _, inner := range []http.ResponseWriter{httptest.NewRecorder(), plainWriter{httptest.NewRecorder()}} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Key", "k")
		h.ServeHTTP(inner, r)
		var body string
		switch w := inner.(type) {
		case *httptest.ResponseRecorder:
			body = w.Body.String()
		case plainWriter:
			body = w.rec.Body.String()
		}
		if !isSW || body != "hello" {
			t.Errorf("%T: StringWriter %v, body %q", inner, isSW, body)
		}
	}
}

// plainWriter is a ResponseWriter without WriteString.
type plainWriter struct{ rec *httptest.ResponseRecorder }

func (w plainWriter) Header() http.Header         { return w.rec.Header() }
func (w plainWriter) Write(b []byte) (int, error) { return w.rec.Write(b) }
func (w plainWriter) WriteHeader(code int)        { w.rec.WriteHeader(code) }
