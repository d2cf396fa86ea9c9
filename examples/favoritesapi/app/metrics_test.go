package app_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/usage"
)

// families returns the metric families of a Prometheus text exposition,
// by name, with their types.
func families(body string) map[string]string {
	fams := map[string]string{}
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				fams[name] = typ
			}
		}
	}
	return fams
}

// The request histogram is labelled by route pattern, never by the path a
// client sent, and by status class; methods are bounded too.
func TestRequestHistogram(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	c := newCustomer(t, s, "histogram@example.com")
	c.call(t, "GET", "/v1/favorites", "")                  // 200
	c.call(t, "GET", "/v1/favorites/Xsecretlookingid", "") // 404 from the handler
	call(t, s.URL, "", "GET", "/v1/favorites", "")         // 401 before the API's mux
	c.call(t, "GET", "/v1/no-such-endpoint-1234", "")      // the API's catch-all
	call(t, s.URL, "", "GET", "/no-such-page-5678", "")    // the site's 404
	call(t, s.URL, "", "BREW", "/v1/favorites", "")        // an odd method
	body := metrics(t, s)
	const h = "favoritesapi_http_request_duration_seconds_count"
	for _, want := range []string{
		h + `{code="2xx",method="GET",route="/v1/favorites"} 1`,
		h + `{code="4xx",method="GET",route="/v1/favorites"} 1`,
		h + `{code="4xx",method="GET",route="/v1/favorites/{id}"} 1`,
		h + `{code="4xx",method="GET",route="/v1/"} 1`,
		h + `{code="4xx",method="OTHER",route="/v1/"} 1`,
		h + `{code="4xx",method="GET",route="unmatched"} 1`,
		h + `{code="2xx",method="GET",route="/{$}"} 1`,
		h + `{code="2xx",method="POST",route="/app/keys"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics has no %s", want)
		}
	}
	// Sample values are numbers that may contain "1234" by chance: look
	// at the names and labels only.
	var labels strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			labels.WriteString(line[:i] + "\n")
		}
	}
	for _, path := range []string{"Xsecretlookingid", "1234", "5678", "BREW", c.token[:16]} {
		if strings.Contains(labels.String(), path) {
			t.Errorf("/metrics shows %q, which a client sent", path)
		}
	}
	fams := families(body)
	for name, typ := range map[string]string{
		"favoritesapi_http_request_duration_seconds": "histogram",
		"go_goroutines":                   "gauge",
		"go_gc_duration_seconds":          "summary",
		"process_cpu_seconds_total":       "counter",
		"process_resident_memory_bytes":   "gauge",
		"go_sql_open_connections":         "gauge",
		"apikit_keys_verified":            "counter",
		"apikit_keys_cached_keys":         "gauge",
		"apikit_login_queue_length":       "gauge",
		"apikit_billing_webhooks_applied": "counter",
		"apikit_invalidation_subscribed":  "gauge",
		"apikit_plan_usage_pending":       "gauge",
		"apikit_abuse_limits_limited":     "counter",
	} {
		if fams[name] != typ {
			t.Errorf("/metrics: %s is a %q, want a %s", name, fams[name], typ)
		}
	}
}

// Every number of every component's Stats is published, under the name
// the reflection-based writer gave it (prefix_field_in_snake_case), except
// the sign-in requests for unknown addresses.
func TestMetricsCoverStats(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	fams := families(metrics(t, s))
	for prefix, v := range map[string]any{
		"apikit_keys":         apikey.VerifierStats{},
		"apikit_plan":         plan.Stats{},
		"apikit_plan_usage":   plan.FlusherStats{},
		"apikit_usage":        usage.Stats{},
		"apikit_abuse_limits": ratelimit.Stats{},
		"apikit_login":        magiclink.Stats{},
		"apikit_billing":      billing.Stats{},
		"apikit_invalidation": invalidate.Stats{},
		"apikit_secretscan":   secretscan.Stats{},
	} {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			f := rt.Field(i)
			switch f.Type.Kind() {
			case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint, reflect.Float64:
			default:
				t.Errorf("%s.%s is a %s: publish it, or teach this test", rt, f.Name, f.Type)
				continue
			}
			name := prefix + "_" + snake(f.Name)
			if name == "apikit_keys_cached_i_ds" { // the old writer's misspelling
				name = "apikit_keys_cached_ids"
			}
			if _, ok := fams[name]; ok == (name == "apikit_login_no_account") {
				t.Errorf("%s.%s: /metrics has %s: %v", rt, f.Name, name, ok)
			}
		}
	}
}

// snake turns CacheHits into cache_hits.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// The metrics handler serves pprof beside /metrics; the public handler
// serves neither.
func TestPprof(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1"} {
		rec := serveMetrics(s, path)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s on the metrics handler = %d", path, rec.Code)
		}
		if r := call(t, s.URL, "", "GET", path, ""); r.status != http.StatusNotFound {
			t.Errorf("GET %s on the public handler = %d, want 404", path, r.status)
		}
	}
}

// serveMetrics serves a GET of path on the server's metrics handler.
func serveMetrics(s *testServer, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}
