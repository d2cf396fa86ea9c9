package usage

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
)

// MiddlewareOptions configures [Meter.Middleware]. Identity is required.
type MiddlewareOptions struct {
	// Identity returns the API key and the user a request is made with,
	// and ok false for a request that is not counted (not authenticated).
	// It is called before the handler, so the middleware must sit behind
	// the authentication middleware (apikey's), which puts the principal
	// in the request's context. It is called from concurrent requests.
	Identity func(r *http.Request) (keyID, userID string, ok bool)
	// Cost, if set, returns the cost of a request that was not refused
	// (see [Meter.Middleware]); nil means 1. It is called after the
	// handler ran, with the request the middleware received.
	Cost func(r *http.Request) int64
}

// Middleware returns HTTP middleware that counts every request Identity
// accepts: after the handler ran, it records the response's outcome
// ([OutcomeOf] its status: 200 if the handler wrote none, 5xx if it
// panicked) and cost with [Meter.Record].
//
// A request's cost is, in this order: the cost set with [SetCost] by the
// handler or a middleware inside this one; 0 for a 429 response (a
// refused request spends nothing); opts.Cost(r); 1.
//
// # Where it goes
//
// Behind authentication (Identity needs the principal) and in front of
// the rate limit or plan middleware, so that the 429s those answer are
// counted:
//
//	apikeyMiddleware(meter.Middleware(opts)(planMiddleware(mux)))
//
// A plan middleware's decision is in the context of the requests it
// passes on, not of this one; to count exactly the cost the plan spent,
// call SetCost from a middleware inside the plan's with the decision's
// cost (see the package example).
//
// The ResponseWriter the handler gets keeps what the one given to the
// middleware can do: it has Unwrap, for [http.ResponseController], and
// implements [http.Flusher], [http.Hijacker], [io.ReaderFrom] and
// [io.StringWriter].
//
// Middleware panics, with a message starting "usage: ", if
// opts.Identity is nil.
func (m *Meter) Middleware(opts MiddlewareOptions) func(http.Handler) http.Handler {
	if opts.Identity == nil {
		panic("usage: MiddlewareOptions.Identity is required: say which key and user each request is counted for")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			keyID, userID, ok := opts.Identity(r)
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			st := &reqState{Context: r.Context()}
			st.rec.ResponseWriter = w
			served := false
			defer func() {
				status := st.rec.status
				if !served { // the handler panicked
					status = http.StatusInternalServerError
				}
				if status == 0 {
					status = http.StatusOK
				}
				var cost int64
				switch {
				case st.costSet:
					cost = st.cost
				case status == http.StatusTooManyRequests:
				case opts.Cost != nil:
					cost = opts.Cost(r)
				default:
					cost = 1
				}
				m.Record(m.now(), userID, keyID, OutcomeOf(status), cost)
			}()
			next.ServeHTTP(&st.rec, r.WithContext(st))
			served = true
		})
	}
}

// reqState is the middleware's state of one request, and its context,
// so that a request costs one allocation for both.
type reqState struct {
	context.Context
	rec     recorder
	cost    int64
	costSet bool
}

type stateKey struct{}

// Value implements context.Context.
func (s *reqState) Value(key any) any {
	if key == (stateKey{}) {
		return s
	}
	return s.Context.Value(key)
}

func (s *reqState) String() string { return "usage.Middleware context" }

// SetCost sets the cost [Meter.Middleware] records for the request whose
// context ctx is (or derives from), replacing opts.Cost; the last call
// wins. Outside the middleware it does nothing. It must not be called
// after the handler returned, nor concurrently with itself.
func SetCost(ctx context.Context, cost int64) {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok {
		st.cost, st.costSet = max(cost, 0), true
	}
}

// recorder is the ResponseWriter that captures the status code.
type recorder struct {
	http.ResponseWriter
	status int // 0 until the final status is written
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// WriteString implements io.StringWriter, so that io.WriteString through
// the recorder does not copy the string, when the wrapped writer (such as
// net/http's) can write strings.
func (w *recorder) WriteString(s string) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if sw, ok := w.ResponseWriter.(io.StringWriter); ok {
		return sw.WriteString(s)
	}
	return w.ResponseWriter.Write([]byte(s))
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher; it does nothing if the wrapped writer
// cannot flush.
func (w *recorder) Flush() { _ = w.FlushError() }

// FlushError flushes, as http.ResponseController.Flush does.
func (w *recorder) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker, through the wrapped writer; a hijacked
// request counts as 101 (OK) unless a status was written before.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// ReadFrom implements io.ReaderFrom, so that a file served through the
// writer can still use sendfile.
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// writerOnly hides a writer's ReadFrom, so that io.Copy does not recurse.
type writerOnly struct{ io.Writer }
