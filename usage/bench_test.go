package usage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
)

// Counting one request of a key already counted this hour: the request
// path's cost.
func BenchmarkRecord(b *testing.B) {
	m := usage.NewMeter(newMemStore(), usage.Options{FlushInterval: time.Hour})
	at := time.Now()
	m.Record(at, "42", "4tQ2x9LmZpB7", usage.OK, 1)
	b.ReportAllocs()
	for b.Loop() {
		m.Record(at, "42", "4tQ2x9LmZpB7", usage.OK, 1)
	}
}

// Many keys counted from every core at once.
func BenchmarkRecordParallel(b *testing.B) {
	m := usage.NewMeter(newMemStore(), usage.Options{FlushInterval: time.Hour})
	at := time.Now()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("key%09d", i)
		m.Record(at, "42", keys[i], usage.OK, 1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Record(at, "42", keys[i&1023], usage.OK, 1)
			i++
		}
	})
}

// One key from every core: the worst contention.
func BenchmarkRecordParallelOneKey(b *testing.B) {
	m := usage.NewMeter(newMemStore(), usage.Options{FlushInterval: time.Hour})
	at := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Record(at, "42", "4tQ2x9LmZpB7", usage.OK, 1)
		}
	})
}

// Recording with the clock read, as the middleware does.
func BenchmarkRecordNow(b *testing.B) {
	m := usage.NewMeter(newMemStore(), usage.Options{FlushInterval: time.Hour})
	b.ReportAllocs()
	for b.Loop() {
		m.Record(time.Now(), "42", "4tQ2x9LmZpB7", usage.OK, 1)
	}
}

// The middleware's cost on top of a handler: identity, the writer
// wrapper, the context, the clock and Record.
func BenchmarkMiddleware(b *testing.B) {
	m := usage.NewMeter(newMemStore(), usage.Options{FlushInterval: time.Hour})
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for name, h := range map[string]http.Handler{
		"bare":    bare,
		"metered": m.Middleware(usage.MiddlewareOptions{Identity: identity})(bare),
	} {
		b.Run(name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-Key", "4tQ2x9LmZpB7")
			r.Header.Set("X-User", "42")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}
