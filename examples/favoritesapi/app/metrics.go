package app

import (
	"cmp"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/usage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// metrics is the server's Prometheus registry (its own, not the
// process-wide default, so that several servers can live in one process)
// and the request histogram that the HTTP middleware feeds.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.HistogramVec

	// observers caches requests' series by labels, so that a request
	// costs a map lookup rather than a label hash and an allocation. Its
	// size is bounded as the labels are: routes × methods × classes.
	mu        sync.RWMutex
	observers map[requestLabels]prometheus.Observer
}

// requestLabels are the request histogram's labels.
type requestLabels struct{ method, route, code string }

// observer returns the request histogram's series for l.
func (m *metrics) observer(l requestLabels) prometheus.Observer {
	m.mu.RLock()
	o, ok := m.observers[l]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = m.requests.WithLabelValues(l.method, l.route, l.code)
	m.mu.Lock()
	if m.observers == nil {
		m.observers = map[requestLabels]prometheus.Observer{}
	}
	m.observers[l] = o
	m.mu.Unlock()
	return o
}

// requestBuckets are the request histogram's bounds, in seconds: API calls
// answered from memory take well under a millisecond, pages that reach the
// database a few, Stripe's redirects hundreds.
var requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// newRequestHistogram returns the request histogram.
func newRequestHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "favoritesapi_http_request_duration_seconds",
		Help: "Time to answer an HTTP request, by method, route pattern (not path) and status class.",
		// Classic buckets for the text format, and a native histogram for
		// servers that ask for it.
		Buckets:                        requestBuckets,
		NativeHistogramBucketFactor:    1.1,
		NativeHistogramMaxBucketNumber: 160,
	}, []string{"method", "route", "code"})
}

// newMetrics registers the Go runtime and process collectors, the
// database pool's, and one collector per component that reads its Stats
// snapshot at scrape time, so that a scrape costs nothing between scrapes
// and the counts are never stale.
func (s *Server) newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: newRequestHistogram(),
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewDBStatsCollector(s.store.DB().DB, s.store.Dialect().Name),
		m.requests,
		keyCollector(s.verifier.Stats),
		loginCollector(s.login.Stats),
		billingCollector(s.billing.Stats),
		invalidationCollector(s.bus.Stats),
		usageCollector(s.usage.Stats),
		meterCollector(s.meter.Stats),
		secretScanCollector(s.secretScan.Stats),
	}
	if d, ok := s.decider.(interface{ Stats() plan.Stats }); ok {
		cs = append(cs, planCollector(d.Stats))
	}
	if l, ok := s.abuse.(interface{ Stats() ratelimit.Stats }); ok {
		cs = append(cs, limiterCollector("apikit_abuse_limits", l.Stats))
	}
	m.registry.MustRegister(cs...)
	return m
}

// MetricsHandler serves GET /metrics, every component's counters and the
// request histogram in the Prometheus formats (promhttp), and the runtime
// profiles of net/http/pprof under /debug/pprof/.
//
// The counts say how the service is used and the profiles cost CPU, so
// neither is on the public handler: the favoritesapi command serves them
// on a listener of their own (METRICS_ADDR, loopback by default). No
// counter tells known login addresses from unknown ones, and no label
// carries a path, a key or an address: routes are the patterns the
// service registers.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{
		// Scrape failures are counted in promhttp_metric_handler_errors_total.
		Registry:            s.metrics.registry,
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	// pprof's handlers, mounted here rather than by importing the package
	// for its side effect of registering them on http.DefaultServeMux.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// observed records what the request histogram needs of a response: its
// status and the route pattern that served it.
type observed struct {
	http.ResponseWriter
	status int
	route  string // the innermost ServeMux pattern, set by [routeOf]
}

func (o *observed) WriteHeader(code int) {
	if o.status == 0 && code >= 200 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observed) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (flushes,
// deadlines).
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// instrument times every request into the histogram, labelled by the
// route pattern that served it; with tracing on, it also names the
// request's span by that pattern (otelhttp, outside, started it before
// routing).
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := &observed{ResponseWriter: w}
		next.ServeHTTP(o, r)
		// The outermost mux set r.Pattern on this very request; the inner
		// ones (behind middleware that copied the request) reported theirs
		// through routeOf.
		pattern := o.route
		if pattern == "" {
			pattern = r.Pattern
		}
		route := routeLabel(pattern)
		s.metrics.observer(requestLabels{methodLabel(r.Method), route, statusClass(o.status)}).
			Observe(time.Since(start).Seconds())
		if s.tracer != nil {
			// otelhttp names its span from r.Pattern once the handler
			// returns: the innermost pattern, not the prefix of a mux.
			r.Pattern = pattern
			trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("http.route", route))
		}
	})
}

// routeOf serves r with next, middleware in front of mux (which may
// refuse r before mux sees it), and reports to [Server.instrument] the
// pattern of mux that served r, or would have: a request refused by the
// key middleware is counted under the route it asked for, not under the
// prefix that mounts mux. Inside next, mux is wrapped by [routed], which
// reports the pattern for free; only a refused request costs a second
// routing.
func routeOf(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if o := findObserved(w); o != nil && o.route == "" {
			_, o.route = mux.Handler(r)
			if o.route == "" {
				o.route = unmatched // and the mux answers 404 or 405
			}
		}
	})
}

// routed serves r with mux and reports the pattern that served it to
// [Server.instrument].
func routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if o := findObserved(w); o != nil {
			o.route = cmp.Or(r.Pattern, unmatched)
		}
	})
}

// findObserved finds instrument's writer under whatever middleware wrapped
// it.
func findObserved(w http.ResponseWriter) *observed {
	for {
		switch v := w.(type) {
		case *observed:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// unmatched is the route of requests that matched no pattern.
const unmatched = "unmatched"

// routeLabel is a ServeMux pattern without its method ("GET
// /v1/favorites/{id}" is "/v1/favorites/{id}"): a bounded set of values,
// whatever paths clients send. Requests that matched no pattern are
// "unmatched".
func routeLabel(pattern string) string {
	if pattern == "" {
		return unmatched
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	}
	return pattern
}

// methodLabel bounds the method label: a client may send any token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusClass is "2xx" for 200 to 299, and so on.
func statusClass(code int) string {
	switch {
	case code == 0: // nothing written: net/http sends 200
		return "2xx"
	case code < 200 || code > 599:
		return "other"
	}
	return [...]string{"2xx", "3xx", "4xx", "5xx"}[code/100-2]
}

// statsCollector publishes a component's Stats snapshot, read once per
// scrape, one metric per field.
type statsCollector[S any] struct {
	stats  func() S
	fields []statsField[S]
}

// statsField is one field of a Stats snapshot as a metric.
type statsField[S any] struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*S) float64
}

func counter[S any](prefix, name, help string, value func(*S) float64) statsField[S] {
	return statsField[S]{prometheus.NewDesc(prefix+"_"+name, help, nil, nil), prometheus.CounterValue, value}
}

func gauge[S any](prefix, name, help string, value func(*S) float64) statsField[S] {
	return statsField[S]{prometheus.NewDesc(prefix+"_"+name, help, nil, nil), prometheus.GaugeValue, value}
}

func (c *statsCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.fields {
		ch <- f.desc
	}
}

func (c *statsCollector[S]) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for _, f := range c.fields {
		ch <- prometheus.MustNewConstMetric(f.desc, f.typ, f.value(&st))
	}
}

// The collectors below keep the names the service has always published
// (prefix_field, the Stats field in snake case), so that dashboards and
// alerts written against them keep working. Counters are cumulative since
// the process started; gauges are the state now.

func keyCollector(stats func() apikey.VerifierStats) prometheus.Collector {
	const p = "apikit_keys"
	type S = apikey.VerifierStats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "verified", "API keys accepted.", func(s *S) float64 { return float64(s.Verified) }),
		counter(p, "malformed", "Credentials refused without a lookup: format, checksum, prefix.", func(s *S) float64 { return float64(s.Malformed) }),
		counter(p, "invalid", "Keys refused: unknown id or wrong secret.", func(s *S) float64 { return float64(s.Invalid) }),
		counter(p, "revoked", "Revoked keys refused.", func(s *S) float64 { return float64(s.Revoked) }),
		counter(p, "expired", "Expired keys refused.", func(s *S) float64 { return float64(s.Expired) }),
		counter(p, "inactive", "Deactivated keys refused.", func(s *S) float64 { return float64(s.Inactive) }),
		counter(p, "unavailable", "Verifications refused with 503: the store failed.", func(s *S) float64 { return float64(s.Unavailable) }),
		counter(p, "address_refused", "Valid keys refused because the request came from outside the key's allowed networks.", func(s *S) float64 { return float64(s.AddressRefused) }),
		counter(p, "cache_hits", "Verifications answered from the key cache.", func(s *S) float64 { return float64(s.CacheHits) }),
		counter(p, "cache_misses", "Verifications the key cache could not answer.", func(s *S) float64 { return float64(s.CacheMisses) }),
		counter(p, "lookups", "Key queries made to the store (concurrent misses share one).", func(s *S) float64 { return float64(s.Lookups) }),
		counter(p, "rechecks", "Cached keys read again because a presented secret did not match.", func(s *S) float64 { return float64(s.Rechecks) }),
		gauge(p, "cached_keys", "Known keys in the cache.", func(s *S) float64 { return float64(s.CachedKeys) }),
		gauge(p, "cached_ids", "Unknown key ids remembered.", func(s *S) float64 { return float64(s.CachedIDs) }),
		counter(p, "touches_written", "Last-use times written to the store.", func(s *S) float64 { return float64(s.TouchesWritten) }),
		counter(p, "touch_errors", "Failed batch writes of last-use times.", func(s *S) float64 { return float64(s.TouchErrors) }),
	}}
}

func planCollector(stats func() plan.Stats) prometheus.Collector {
	const p = "apikit_plan"
	type S = plan.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "allowed", "API requests admitted by their plan.", func(s *S) float64 { return float64(s.Allowed) }),
		counter(p, "rate_limited", "API requests refused by a rate limit of their plan (429).", func(s *S) float64 { return float64(s.RateLimited) }),
		counter(p, "quota_exceeded", "API requests refused because the plan's quota was spent (429).", func(s *S) float64 { return float64(s.QuotaExceeded) }),
		counter(p, "limited", "API requests refused: rate_limited + quota_exceeded.", func(s *S) float64 { return float64(s.Limited) }),
		counter(p, "errors", "Decisions that failed, or failed open.", func(s *S) float64 { return float64(s.Errors) }),
		counter(p, "failed_open", "Backend failures answered by admitting the request.", func(s *S) float64 { return float64(s.FailedOpen) }),
		gauge(p, "identities", "Identities whose budgets are held in memory.", func(s *S) float64 { return float64(s.Identities) }),
		counter(p, "expired", "Identities forgotten because they carried no state.", func(s *S) float64 { return float64(s.Expired) }),
		counter(p, "overflowed", "Requests refused because the decider was full.", func(s *S) float64 { return float64(s.Overflowed) }),
	}}
}

func usageCollector(stats func() plan.FlusherStats) prometheus.Collector {
	const p = "apikit_plan_usage"
	type S = plan.FlusherStats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		gauge(p, "pending", "Quota counters with usage not yet written to the database.", func(s *S) float64 { return float64(s.Pending) }),
		counter(p, "flushes", "Batched writes of quota usage.", func(s *S) float64 { return float64(s.Flushes) }),
		counter(p, "failures", "Batched writes of quota usage that failed.", func(s *S) float64 { return float64(s.Failures) }),
		counter(p, "written", "Quota usage entries written.", func(s *S) float64 { return float64(s.Written) }),
		counter(p, "restores", "Quota counters restored from the database.", func(s *S) float64 { return float64(s.Restores) }),
	}}
}

// meterCollector publishes the usage meter's counts: requests counted
// per key and written in batches.
func meterCollector(stats func() usage.Stats) prometheus.Collector {
	const p = "apikit_usage"
	type S = usage.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		gauge(p, "pending", "Usage counters (user, key, hour) held in memory, not yet written.", func(s *S) float64 { return float64(s.Pending) }),
		counter(p, "flushes", "Batched writes of usage counts.", func(s *S) float64 { return float64(s.Flushes) }),
		counter(p, "failures", "Batched writes of usage counts that failed (kept and retried).", func(s *S) float64 { return float64(s.Failures) }),
		counter(p, "written", "Usage counters written.", func(s *S) float64 { return float64(s.Written) }),
		counter(p, "dropped", "Requests not counted: the meter was full, or they had no user.", func(s *S) float64 { return float64(s.Dropped) }),
	}}
}

func limiterCollector(p string, stats func() ratelimit.Stats) prometheus.Collector {
	type S = ratelimit.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "allowed", "Events allowed.", func(s *S) float64 { return float64(s.Allowed) }),
		counter(p, "limited", "Events refused.", func(s *S) float64 { return float64(s.Limited) }),
		counter(p, "errors", "Decisions that failed, or failed open.", func(s *S) float64 { return float64(s.Errors) }),
		counter(p, "failed_open", "Backend failures answered by allowing the event.", func(s *S) float64 { return float64(s.FailedOpen) }),
		gauge(p, "keys", "Keys whose state is held in memory.", func(s *S) float64 { return float64(s.Keys) }),
		counter(p, "expired", "Keys forgotten because their bucket had refilled.", func(s *S) float64 { return float64(s.Expired) }),
		counter(p, "overflowed", "New keys refused because the limiter was full.", func(s *S) float64 { return float64(s.Overflowed) }),
		counter(p, "fallbacks", "Decisions made in memory because Redis failed.", func(s *S) float64 { return float64(s.Fallbacks) }),
	}}
}

// loginCollector publishes magiclink's counts but one: NoAccount, the
// sign-in requests for addresses without an account, would let whoever
// reads the metrics test addresses for accounts.
func loginCollector(stats func() magiclink.Stats) prometheus.Collector {
	const p = "apikit_login"
	type S = magiclink.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "links_requested", "Sign-in requests accepted (known or unknown address).", func(s *S) float64 { return float64(s.LinksRequested) }),
		counter(p, "links_invalid", "Sign-in requests refused for a malformed address.", func(s *S) float64 { return float64(s.LinksInvalid) }),
		counter(p, "links_limited", "Sign-in requests refused by the per-address limit.", func(s *S) float64 { return float64(s.LinksLimited) }),
		counter(p, "client_limited", "Sign-in requests refused by a per-client limit.", func(s *S) float64 { return float64(s.ClientLimited) }),
		counter(p, "cross_origin", "Cross-origin POSTs refused.", func(s *S) float64 { return float64(s.CrossOrigin) }),
		counter(p, "mail_queued", "Emails queued for the mail workers.", func(s *S) float64 { return float64(s.MailQueued) }),
		counter(p, "mail_sent", "Emails sent.", func(s *S) float64 { return float64(s.MailSent) }),
		counter(p, "mail_retries", "Failed sends that were retried.", func(s *S) float64 { return float64(s.MailRetries) }),
		counter(p, "mail_failed", "Emails given up on.", func(s *S) float64 { return float64(s.MailFailed) }),
		counter(p, "mail_dropped", "Emails refused because the queue was full.", func(s *S) float64 { return float64(s.MailDropped) }),
		counter(p, "mail_abandoned", "Queued emails not sent at shutdown.", func(s *S) float64 { return float64(s.MailAbandoned) }),
		gauge(p, "queue_length", "Emails waiting to be sent.", func(s *S) float64 { return float64(s.QueueLength) }),
		counter(p, "verify_succeeded", "Sign-in links and codes redeemed.", func(s *S) float64 { return float64(s.VerifySucceeded) }),
		counter(p, "verify_failed", "Unknown, used, expired or malformed sign-in tokens.", func(s *S) float64 { return float64(s.VerifyFailed) }),
		counter(p, "verify_limited", "Verification attempts refused for too many failures.", func(s *S) float64 { return float64(s.VerifyLimited) }),
		counter(p, "sessions_created", "Sessions created.", func(s *S) float64 { return float64(s.SessionsCreated) }),
		counter(p, "sessions_loaded", "Requests authenticated by a session.", func(s *S) float64 { return float64(s.SessionsLoaded) }),
		counter(p, "sessions_rejected", "Cookies naming no valid session.", func(s *S) float64 { return float64(s.SessionsRejected) }),
		counter(p, "sessions_revoked", "Sessions ended by logout or revocation.", func(s *S) float64 { return float64(s.SessionsRevoked) }),
		counter(p, "email_changes_requested", "Email-change links sent.", func(s *S) float64 { return float64(s.EmailChangesRequested) }),
		counter(p, "email_changes_confirmed", "Email changes made.", func(s *S) float64 { return float64(s.EmailChangesConfirmed) }),
		counter(p, "email_changes_taken", "Email-change links refused: the address belonged to another account by then.", func(s *S) float64 { return float64(s.EmailChangesTaken) }),
		counter(p, "store_errors", "Store failures.", func(s *S) float64 { return float64(s.StoreErrors) }),
		counter(p, "audit_errors", "Security events the security log failed to record.", func(s *S) float64 { return float64(s.AuditErrors) }),
	}}
}

func billingCollector(stats func() billing.Stats) prometheus.Collector {
	const p = "apikit_billing"
	type S = billing.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "checkouts_created", "Checkout sessions created (or dev checkouts started).", func(s *S) float64 { return float64(s.CheckoutsCreated) }),
		counter(p, "checkout_errors", "Sign-ups that failed on Stripe or the store.", func(s *S) float64 { return float64(s.CheckoutErrors) }),
		counter(p, "sign_in_links_sent", "Sign-in links sent after a completed checkout.", func(s *S) float64 { return float64(s.SignInLinksSent) }),
		counter(p, "sign_in_link_errors", "Sign-in links after a checkout that could not be sent.", func(s *S) float64 { return float64(s.SignInLinkErrors) }),
		counter(p, "success_refused", "Success pages refused: incomplete, unknown or foreign sessions.", func(s *S) float64 { return float64(s.SuccessRefused) }),
		counter(p, "rate_limited", "Sign-ups and dev checkouts refused by the per-client limit.", func(s *S) float64 { return float64(s.RateLimited) }),
		counter(p, "cross_origin", "Cross-origin requests refused.", func(s *S) float64 { return float64(s.CrossOrigin) }),
		counter(p, "portal_sessions", "Customer portal sessions created.", func(s *S) float64 { return float64(s.PortalSessions) }),
		counter(p, "portal_errors", "Customer portal sessions that failed.", func(s *S) float64 { return float64(s.PortalErrors) }),
		counter(p, "dev_checkouts", "Dev-mode checkouts completed.", func(s *S) float64 { return float64(s.DevCheckouts) }),
		counter(p, "plan_changes", "Plan changes answered.", func(s *S) float64 { return float64(s.PlanChanges) }),
		counter(p, "free_signups", "Sign-ups for the free plan.", func(s *S) float64 { return float64(s.FreeSignups) }),
		counter(p, "webhooks_applied", "Stripe events that changed state.", func(s *S) float64 { return float64(s.WebhooksApplied) }),
		counter(p, "webhooks_duplicate", "Redeliveries of applied Stripe events.", func(s *S) float64 { return float64(s.WebhooksDuplicate) }),
		counter(p, "webhooks_ignored", "Stripe events of types the service does not handle.", func(s *S) float64 { return float64(s.WebhooksIgnored) }),
		counter(p, "webhooks_invalid", "Webhook deliveries refused with 400: signature, timestamp, payload, size.", func(s *S) float64 { return float64(s.WebhooksInvalid) }),
		counter(p, "webhooks_failed", "Webhook deliveries answered 5xx for Stripe to retry.", func(s *S) float64 { return float64(s.WebhooksFailed) }),
		counter(p, "pruned", "Event ids and checkout sessions deleted by pruning.", func(s *S) float64 { return float64(s.Pruned) }),
		counter(p, "prune_errors", "Prunings that failed.", func(s *S) float64 { return float64(s.PruneErrors) }),
		counter(p, "entitled_cache_hits", "Entitlement checks answered from memory.", func(s *S) float64 { return float64(s.EntitledCacheHits) }),
		counter(p, "entitled_cache_misses", "Entitlement checks that read the store.", func(s *S) float64 { return float64(s.EntitledCacheMisses) }),
		counter(p, "audit_errors", "Billing events the security log failed to record.", func(s *S) float64 { return float64(s.AuditErrors) }),
	}}
}

// secretScanCollector publishes the counts of GitHub's secret scanning
// endpoint.
func secretScanCollector(stats func() secretscan.Stats) prometheus.Collector {
	const p = "apikit_secretscan"
	type S = secretscan.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "refused", "Requests refused: unsigned, mis-signed, malformed or too large.", func(s *S) float64 { return float64(s.Refused) }),
		counter(p, "reports", "Tokens reported in signed requests.", func(s *S) float64 { return float64(s.Reports) }),
		counter(p, "true_positives", "Reported tokens that are keys of ours.", func(s *S) float64 { return float64(s.TruePositives) }),
		counter(p, "revoked", "Live keys revoked after a report.", func(s *S) float64 { return float64(s.Revoked) }),
		counter(p, "failed", "Reports that could not be handled (answered 503 for GitHub to retry).", func(s *S) float64 { return float64(s.Failed) }),
		counter(p, "key_fetches", "Fetches of GitHub's public keys.", func(s *S) float64 { return float64(s.KeyFetches) }),
	}}
}

func invalidationCollector(stats func() invalidate.Stats) prometheus.Collector {
	const p = "apikit_invalidation"
	type S = invalidate.Stats
	return &statsCollector[S]{stats: stats, fields: []statsField[S]{
		counter(p, "published", "Invalidations published.", func(s *S) float64 { return float64(s.Published) }),
		counter(p, "coalesced", "Invalidations merged with an identical one already waiting.", func(s *S) float64 { return float64(s.Coalesced) }),
		counter(p, "overflows", "Times the waiting invalidations collapsed into one for everything.", func(s *S) float64 { return float64(s.Overflows) }),
		counter(p, "sent", "Messages sent to the other instances.", func(s *S) float64 { return float64(s.Sent) }),
		counter(p, "send_errors", "Failed sends (retried).", func(s *S) float64 { return float64(s.SendErrors) }),
		counter(p, "received", "Messages received from the other instances.", func(s *S) float64 { return float64(s.Received) }),
		counter(p, "events", "Invalidations received and applied.", func(s *S) float64 { return float64(s.Events) }),
		counter(p, "invalid", "Received messages that could not be read.", func(s *S) float64 { return float64(s.Invalid) }),
		counter(p, "connects", "Subscriptions established.", func(s *S) float64 { return float64(s.Connects) }),
		counter(p, "disconnects", "Subscriptions lost.", func(s *S) float64 { return float64(s.Disconnects) }),
		gauge(p, "subscribed", "1 while the subscription is up.", func(s *S) float64 { return float64(s.Subscribed) }),
		gauge(p, "degraded", "1 while caches are served briefly because the bus is down.", func(s *S) float64 { return float64(s.Degraded) }),
		gauge(p, "pending", "Invalidations waiting to be sent.", func(s *S) float64 { return float64(s.Pending) }),
	}}
}
