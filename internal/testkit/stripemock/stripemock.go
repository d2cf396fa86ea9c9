// Package stripemock runs Stripe's stripe-mock (github.com/stripe/stripe-mock)
// for tests: a stateless fake of the Stripe API that checks request
// parameters against Stripe's OpenAPI specification and answers with
// fixture objects. It does not remember what was created.
package stripemock

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/syncbuf"
	"github.com/apikit/apikit/internal/testkit/testenv"
)

// Start runs stripe-mock on the loopback interface, both its HTTP and its
// HTTPS port (by default the HTTPS port listens on every interface), waits
// until it answers, and returns its HTTP base URL, such as
// "http://127.0.0.1:41234". The process is killed when the test ends.
//
// Without a stripe-mock program on PATH the test is skipped, or fails in CI
// (see package testenv).
func Start(tb testing.TB) string {
	tb.Helper()
	bin := testenv.Program(tb, "stripe-mock")
	for attempt := 0; ; attempt++ {
		url, err := start(tb, bin)
		if err == nil {
			return url
		}
		if attempt == 2 {
			tb.Fatalf("stripemock: %v", err)
		}
	}
}

func start(tb testing.TB, bin string) (string, error) {
	httpPort, err := freePort()
	if err != nil {
		return "", err
	}
	httpsPort, err := freePort()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"-http-addr", "127.0.0.1:"+strconv.Itoa(httpPort),
		"-https-addr", "127.0.0.1:"+strconv.Itoa(httpsPort))
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		return "", fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		cancel()
		<-exited
	}
	url := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			cancel()
			return "", fmt.Errorf("stripe-mock exited early:\n%s", out.String())
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/customers", nil)
		req.Header.Set("Authorization", "Bearer sk_test_stripemock")
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			tb.Cleanup(stop)
			return url, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("stripe-mock did not answer on %s within 30s:\n%s", url, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
