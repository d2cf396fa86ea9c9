package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/apikit/apikit/ratelimit"
)

// handleMetrics publishes the components' Stats snapshots in the
// Prometheus text format, one gauge or counter per numeric field:
// apikit_keys_verified, apikit_ratelimit_limited, apikit_mail_sent …
//
// The counts say how the service is used, so they are served only to
// clients on the loopback interface: scrape them through a sidecar, or
// from the same host.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() || r.Header.Get("X-Forwarded-For") != "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	writeStats(w, "apikit_keys", s.verifier.Stats())
	if l, ok := s.limiter.(interface{ Stats() ratelimit.Stats }); ok {
		writeStats(w, "apikit_ratelimit", l.Stats())
	}
	writeStats(w, "apikit_login", s.login.Stats())
	writeStats(w, "apikit_billing", s.billing.Stats())
}

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
