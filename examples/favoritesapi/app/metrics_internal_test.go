package app

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkInstrument measures what the request histogram adds to a
// request routed through two muxes, as the API's are: compare with
// BenchmarkInstrument/bare.
func BenchmarkInstrument(b *testing.B) {
	inner := http.NewServeMux()
	inner.HandleFunc("GET /v1/favorites/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	wrap := func(h http.Handler) http.Handler { // middleware that copies the request
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r.WithContext(r.Context())) })
	}
	s := &Server{metrics: &metrics{requests: newRequestHistogram()}}
	for _, bc := range []struct {
		name string
		h    func() http.Handler
	}{
		{"bare", func() http.Handler {
			root := http.NewServeMux()
			root.Handle("/v1/", wrap(inner))
			return root
		}},
		{"instrumented", func() http.Handler {
			root := http.NewServeMux()
			root.Handle("/v1/", routeOf(inner, wrap(routed(inner))))
			return s.instrument(root)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := bc.h()
			r := httptest.NewRequest("GET", "/v1/favorites/abc", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkSecurityHeaders measures what securityHeaders adds to an API
// request and to a page: compare with BenchmarkSecurityHeaders/bare.
func BenchmarkSecurityHeaders(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, bc := range []struct {
		name, path string
		h          http.Handler
	}{
		{"bare", "/v1/me", ok},
		{"api", "/v1/me", securityHeaders(ok, true)},
		{"page", "/app", securityHeaders(ok, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", bc.path, nil)
			w := headerWriter{http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bc.h.ServeHTTP(w, r)
			}
		})
	}
}

// headerWriter is a ResponseWriter that only has headers, so that a
// benchmark's figures are the middleware's.
type headerWriter struct{ h http.Header }

func (w headerWriter) Header() http.Header         { return w.h }
func (w headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w headerWriter) WriteHeader(int)             {}
