package app

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// MetricsHandler publishes the components' Stats snapshots in the
// Prometheus text format, one gauge or counter per numeric field:
// apikit_keys_verified, apikit_plan_quota_exceeded, apikit_mail_sent …
//
// The counts say how the service is used, so they are not on the public
// handler: the favoritesapi command serves them on a listener of their own
// (METRICS_ADDR, loopback by default). No counter tells known login
// addresses from unknown ones.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		writeStats(w, "apikit_keys", s.verifier.Stats())
		if d, ok := s.decider.(interface{ Stats() plan.Stats }); ok {
			writeStats(w, "apikit_plan", d.Stats())
		}
		if s.usage != nil {
			writeStats(w, "apikit_plan_usage", s.usage.Stats())
		}
		if l, ok := s.abuse.(interface{ Stats() ratelimit.Stats }); ok {
			writeStats(w, "apikit_abuse_limits", l.Stats())
		}
		writeStats(w, "apikit_login", s.login.Stats())
		writeStats(w, "apikit_billing", s.billing.Stats())
		writeStats(w, "apikit_invalidation", s.bus.Stats())
	})
	return mux
}

// unexported lists Stats fields that are not published: a count of login
// requests for addresses without an account would let whoever reads the
// metrics test addresses for accounts.
var unexported = map[string]bool{"apikit_login_no_account": true}

// writeStats writes each exported numeric field of the struct v as a
// metric named prefix_field_name, recursing into nested structs and maps
// of counts (as labels).
func writeStats(w io.Writer, prefix string, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return
	}
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		name := prefix + "_" + snake(f.Name)
		if unexported[name] {
			continue
		}
		fv := rv.Field(i)
		switch fv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fmt.Fprintf(w, "%s %d\n", name, fv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			fmt.Fprintf(w, "%s %d\n", name, fv.Uint())
		case reflect.Float32, reflect.Float64:
			fmt.Fprintf(w, "%s %g\n", name, fv.Float())
		case reflect.Struct:
			writeStats(w, name, fv.Interface())
		case reflect.Map:
			if fv.Type().Key().Kind() != reflect.String {
				continue
			}
			iter := fv.MapRange()
			for iter.Next() {
				val := iter.Value()
				switch val.Kind() {
				case reflect.Int, reflect.Int64, reflect.Int32:
					fmt.Fprintf(w, "%s{key=%q} %d\n", name, iter.Key().String(), val.Int())
				case reflect.Uint, reflect.Uint64, reflect.Uint32:
					fmt.Fprintf(w, "%s{key=%q} %d\n", name, iter.Key().String(), val.Uint())
				}
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
