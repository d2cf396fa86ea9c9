package plan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/apikit/apikit/problem"
)

// MiddlewareOptions configures [Middleware]. Request is required; the zero
// value of every other field gives the default described with it.
type MiddlewareOptions struct {
	// Request builds the decision request for r: its plan, user and key
	// ids, the subscription's anchor, and optionally its Cost and
	// Deferred. It typically reads the principal the authentication
	// middleware put in r's context and the plan its user's subscription
	// selects. An error answers with OnError without deciding: return a
	// [*StatusError] to answer with a status of your own (403 for a user
	// without a plan); any other error answers 503. It is called from
	// concurrent requests.
	Request func(r *http.Request) (Request, error)
	// Cost, if set, is the request's cost before the handler runs,
	// replacing the Request's Cost; 0 means 1, as in [Request].Cost.
	Cost func(r *http.Request) int
	// Deferred, if set, reports whether the request's cost is known only
	// after its handler ran (the handler calls [SetCost]), as if Request
	// had set [Request].Deferred. The middleware then decides with
	// Deferred (admitted if every policy has a unit left, nothing spent)
	// and charges the final cost when the handler returns.
	Deferred func(r *http.Request) bool
	// OnRefused writes the response to a refused request; the rate limit
	// headers and Retry-After are already set. nil means [WriteRefused]:
	// 429 with a problem document (quota-exceeded or rate_limited).
	OnRefused func(w http.ResponseWriter, r *http.Request, d *Decision)
	// OnError writes the response when there is no decision: Request or
	// the Decider failed. nil means [WriteError]: the status of a
	// *StatusError, 500 for an [ErrInvalidRequest], 503 otherwise.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Logger, if set, receives a line for every refused request (Info:
	// plan, refusal and seconds to wait), for every request without a
	// decision (Warn, with the error), and for every charge that failed
	// after its handler ran (Error: that usage is lost). nil means no
	// logging.
	Logger *slog.Logger
}

// StatusError is an error that [MiddlewareOptions].Request returns to
// answer the request with a status and a problem of its own, instead of
// 503: a key whose user has no plan (no subscription and no free plan)
// gets 403, say. [WriteError] writes it as an RFC 9457 problem with Code
// and Detail, which must be safe to show to the client.
type StatusError struct {
	Status int    // the HTTP status, such as 403
	Code   string // the problem's code, such as "no_plan"
	Detail string // the problem's detail, shown to the client
	Err    error  // the cause, if any; not shown to the client
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("plan: %d %s", e.Status, e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// WriteError is the default [MiddlewareOptions].OnError. For a
// [*StatusError] it answers the error's status with its code and detail;
// for an error wrapping [ErrInvalidRequest] (a plan or a cost that can
// never be decided: a bug or a misconfiguration), 500 with the code
// "plan_error"; for any other error, such as [ErrUnavailable], 503 with
// the code "plan_unavailable". The text of other errors is not sent: it
// may name internal hosts.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		problem.Write(w, problem.New(se.Status, se.Code, se.Detail))
	case errors.Is(err, ErrInvalidRequest):
		problem.Write(w, problem.New(http.StatusInternalServerError, "plan_error",
			"The request could not be decided against its plan."))
	default:
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "plan_unavailable",
			"Limits and quotas cannot be checked right now; try again shortly."))
	}
}

// Middleware returns HTTP middleware that decides every request against
// its plan with d, in one call: it builds the [Request] with
// opts.Request, decides it, sets the rate limit headers of every policy
// ([Decision.WriteHeaders]) and then calls the wrapped handler if the
// request is admitted, or OnRefused (by default a 429 problem) if not.
// Every response it lets through or refuses carries the headers, set
// before the handler writes; the handler finds the decision with
// [DecisionFrom].
//
// # Costs known after the handler ran
//
// A request's cost is normally decided and spent before the handler
// runs (opts.Cost, or the Request's Cost). When the cost is only known
// once the handler ran (an item count, a response size), mark the
// request deferred (opts.Deferred, or [Request].Deferred in
// opts.Request) and have the handler call [SetCost]. The middleware then
// decides with Deferred — admitted if every limit and the quota have at
// least one unit left, nothing spent — runs the handler, and
// [Decider].Charge-s the cost the handler set (or, if it set none, the
// request's cost: 1 by default) when the handler returns, even if the
// client has gone. The charge may overdraw the budgets; the next
// requests then wait until they refill (see [Decider]). The headers
// describe the budgets before the charge.
//
// The middleware needs to know about deferral before the handler runs,
// because that is when it decides; a wrapper around the route's handler
// would run too late. If a handler calls SetCost on a request that was
// not deferred, its cost was already spent: the middleware charges the
// difference if the new cost is higher, and refunds nothing if it is
// lower.
//
// A charge that fails after the handler ran cannot change the response;
// it is logged (opts.Logger) and that usage is lost.
//
// Middleware panics, with a message starting "plan: ", if d or
// opts.Request is nil. The middleware is safe for concurrent use.
func Middleware(d Decider, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if d == nil {
		panic("plan: Middleware needs a Decider")
	}
	if opts.Request == nil {
		panic("plan: MiddlewareOptions.Request is required: say which plan and identity each request is decided under")
	}
	mw := &middleware{
		decider:   d,
		request:   opts.Request,
		cost:      opts.Cost,
		deferred:  opts.Deferred,
		onRefused: opts.OnRefused,
		onError:   opts.OnError,
		log:       opts.Logger,
	}
	if mw.onRefused == nil {
		mw.onRefused = func(w http.ResponseWriter, _ *http.Request, d *Decision) { WriteRefused(w, d) }
	}
	if mw.onError == nil {
		mw.onError = WriteError
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mw.serve(w, r, next)
		})
	}
}

type middleware struct {
	decider   Decider
	request   func(*http.Request) (Request, error)
	cost      func(*http.Request) int
	deferred  func(*http.Request) bool
	onRefused func(http.ResponseWriter, *http.Request, *Decision)
	onError   func(http.ResponseWriter, *http.Request, error)
	log       *slog.Logger

	// headers caches the policyHeaders of each set of policies decided,
	// so that a plan's constant header parts are formatted once. It is
	// copied on write: reads take no lock.
	headers atomic.Pointer[map[policyKey]*policyHeaders]
	mu      sync.Mutex // serialises writers of headers
}

// maxCachedHeaders bounds the cache of policyHeaders: a plan's set of
// policies changes with the quota's period length (28 to 31 days) and
// with overrides.
const maxCachedHeaders = 256

// policyHeaders returns the policyHeaders of d, from the cache if they
// are there.
func (mw *middleware) policyHeaders(d *Decision) *policyHeaders {
	k := d.key()
	if m := mw.headers.Load(); m != nil {
		if ph := (*m)[k]; ph != nil {
			return ph
		}
	}
	ph := new(policyHeaders)
	ph.format(d)
	mw.mu.Lock()
	defer mw.mu.Unlock()
	old := mw.headers.Load()
	if old != nil && len(*old) >= maxCachedHeaders {
		return ph
	}
	m := make(map[policyKey]*policyHeaders, 1)
	if old != nil {
		m = maps.Clone(*old)
	}
	m[k] = ph
	mw.headers.Store(&m)
	return ph
}

// reqState is the middleware's state of one request. It is also the
// request's context, so that a request costs one allocation for both.
type reqState struct {
	context.Context
	decision Decision
	req      Request
	cost     int  // set by SetCost
	costSet  bool // SetCost was called

	// The response headers' values, and the bytes of those that are
	// formatted per request: written once, then only read (see
	// Decision.writeHeaders). buf holds the RateLimit value and two
	// numbers: up to three policies of ordinary names fit, and more spill
	// to the heap (correct, one allocation more). Its length keeps a
	// reqState, with the allocator's 8-byte header of objects over 512
	// bytes, within the 896-byte size class (TestStateSize).
	vals [numHeaderValues]string
	buf  [stateBufLen]byte
}

// stateBufLen is the length of reqState.buf.
const stateBufLen = 168

type stateKey struct{}

// Value implements context.Context.
func (s *reqState) Value(key any) any {
	if key == (stateKey{}) {
		return s
	}
	return s.Context.Value(key)
}

func (s *reqState) String() string { return "plan.Middleware context" }

func (mw *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	req, err := mw.request(r)
	if err != nil {
		mw.fail(w, r, err)
		return
	}
	if mw.cost != nil {
		req.Cost = mw.cost(r)
	}
	if mw.deferred != nil && mw.deferred(r) {
		req.Deferred = true
	}
	ctx := r.Context()
	st := &reqState{Context: ctx, req: req}
	if m, ok := mw.decider.(*Memory); ok {
		err = m.decide(ctx, &st.req, modeDecide, &st.decision) // no copy of the Decision
	} else {
		st.decision, err = mw.decider.Decide(ctx, req)
	}
	if err != nil {
		mw.fail(w, r, err)
		return
	}
	d := &st.decision
	if d.n > 0 {
		d.writeHeaders(w.Header(), mw.policyHeaders(d), &st.vals, st.buf[:0], true)
	}
	if !d.Allowed {
		if mw.log != nil {
			mw.log.LogAttrs(ctx, slog.LevelInfo, "plan: request refused",
				slog.String("plan", d.Plan), slog.String("refusal", d.Refusal.String()),
				slog.Int64("retry_after", d.RetryAfterSeconds()))
		}
		mw.onRefused(w, r, d)
		return
	}
	if req.Deferred {
		defer mw.charge(st)
	}
	next.ServeHTTP(w, r.WithContext(st))
	if !req.Deferred && st.costSet {
		mw.charge(st)
	}
}

// charge spends, after the handler ran, what the decision did not.
func (mw *middleware) charge(st *reqState) {
	req := st.req
	spent := 0
	if !req.Deferred {
		spent = req.cost()
	}
	cost := req.cost()
	if st.costSet {
		cost = st.cost
	}
	if cost <= spent {
		return
	}
	req.Cost, req.Deferred = cost-spent, false
	// The charge is owed even if the client has gone.
	ctx := context.WithoutCancel(st.Context)
	if _, err := mw.decider.Charge(ctx, req); err != nil && mw.log != nil {
		mw.log.LogAttrs(ctx, slog.LevelError, "plan: charge after the handler failed; its usage is lost",
			slog.String("plan", st.decision.Plan), slog.Int("cost", req.Cost), slog.String("error", err.Error()))
	}
}

// fail logs err, if there is a Logger, and answers with OnError.
func (mw *middleware) fail(w http.ResponseWriter, r *http.Request, err error) {
	if mw.log != nil {
		var se *StatusError
		if !errors.As(err, &se) {
			mw.log.LogAttrs(r.Context(), slog.LevelWarn, "plan: no decision", slog.String("error", err.Error()))
		}
	}
	mw.onError(w, r, err)
}

// SetCost sets the cost of the request whose context ctx is, from its
// handler: for a deferred request (see [Middleware]), the cost the
// middleware charges when the handler returns; for another, a higher cost
// than the one already spent makes the middleware charge the difference.
// A cost of 0 (or less) charges a deferred request nothing. The last call
// wins. Outside the
// middleware, SetCost does nothing. It must not be called after the
// handler returned, nor concurrently with itself.
func SetCost(ctx context.Context, cost int) {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok {
		st.cost, st.costSet = max(cost, 0), true
	}
}

// DecisionFrom returns the decision [Middleware] made for the request
// whose context ctx is: the plan, and every limit's and the quota's
// remaining units and reset, as a GET /v1/me shows them. For a deferred
// request it is the state before the charge. The Decision belongs to
// the request; it must not be modified. ok is false outside the
// middleware.
func DecisionFrom(ctx context.Context) (d *Decision, ok bool) {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok {
		return &st.decision, true
	}
	return nil, false
}
