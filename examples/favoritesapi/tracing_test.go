package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/syncbuf"
)

// collector is a stand-in OpenTelemetry collector: it counts the OTLP/HTTP
// trace exports it receives, and every other request too.
type collector struct {
	url             string
	exports, others atomic.Int64
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" && len(body) > 0 {
			c.exports.Add(1)
		} else {
			c.others.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// serveOnce runs the command's serve with vars, makes requests, and stops
// it as SIGTERM would.
func serveOnce(t *testing.T, vars map[string]string) {
	t.Helper()
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	vars["ADDR"], vars["METRICS_ADDR"], vars["DATABASE_URL"] = addr, metricsAddr, filepath.Join(t.TempDir(), "f.db")
	ctx, stop := context.WithCancel(t.Context())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env(vars), &stdout, &stderr) }()
	defer func() {
		stop()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d:\n%s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop")
		}
	}()
	var err error
	for range 200 {
		var resp *http.Response
		if resp, err = http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("server never answered: %v\n%s", err, stderr.String())
	}
	for _, path := range []string{"/v1/me", "/", "/no/such/page"} {
		if resp, err := http.Get("http://" + addr + path); err == nil {
			resp.Body.Close()
		}
	}
	// pprof is beside /metrics, and only there.
	if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/ on METRICS_ADDR = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + addr + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("public /debug/pprof/ = %v, %v; want 404", resp, err)
	} else {
		resp.Body.Close()
	}
}

// Without OTEL_* variables nothing is traced: the collector named by an
// unrelated variable hears nothing. With OTEL_EXPORTER_OTLP_ENDPOINT the
// requests' spans reach it, the last batch at shutdown.
func TestServeTracing(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		c := startCollector(t)
		// Set, but not one that turns tracing on.
		serveOnce(t, map[string]string{"OTEL_SERVICE_NAME": "favoritesapi-test", "OTEL_EXPORTER_OTLP_HEADERS": "x=" + c.url})
		if n, m := c.exports.Load(), c.others.Load(); n+m != 0 {
			t.Errorf("the collector got %d exports and %d other requests with tracing off", n, m)
		}
	})
	for name, vars := range map[string]func(url string) map[string]string{
		"endpoint": func(url string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url}
		},
		"traces endpoint": func(url string) map[string]string {
			return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url + "/v1/traces"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := startCollector(t)
			serveOnce(t, vars(c.url))
			if n, m := c.exports.Load(), c.others.Load(); n == 0 || m != 0 {
				t.Errorf("the collector got %d exports and %d other requests; want exports only", n, m)
			}
		})
	}
	t.Run("disabled", func(t *testing.T) {
		c := startCollector(t)
		serveOnce(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": c.url, "OTEL_SDK_DISABLED": "true"})
		if n, m := c.exports.Load(), c.others.Load(); n+m != 0 {
			t.Errorf("the collector got %d exports and %d other requests with OTEL_SDK_DISABLED=true", n, m)
		}
	})
}

// Which OTEL_* settings turn tracing on, and which this build refuses.
func TestTracerProviderFromEnv(t *testing.T) {
	for _, tc := range []struct {
		vars    map[string]string
		on, err bool
	}{
		{vars: nil},
		{vars: map[string]string{"OTEL_SERVICE_NAME": "x"}},
		{vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, on: true},
		{vars: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, on: true},
		{vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{vars: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		{vars: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{vars: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
		{vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: true},
		{vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, err: true},
	} {
		tp, err := tracerProviderFromEnv(t.Context(), env(tc.vars))
		if (err != nil) != tc.err || (tp != nil) != tc.on {
			t.Errorf("%v: provider %v, error %v; want on %v, error %v", tc.vars, tp != nil, err, tc.on, tc.err)
		}
		if tp != nil {
			tp.Shutdown(t.Context())
		}
	}
}
