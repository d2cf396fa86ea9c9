// Package testenv finds the external services that apikit's tests talk to:
// PostgreSQL, Redis and helper programs such as stripe-mock and Chromium.
//
// Outside CI a missing service skips the test with a message that names the
// environment variable or program to provide. When the CI environment
// variable is "true" a missing service fails the test instead, so that a
// suite can never pass in CI by silently not running.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every suite is
// mandatory.
func InCI() bool { return os.Getenv("CI") == "true" }

// Postgres returns the PostgreSQL URL in APIKIT_TEST_POSTGRES, for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
func Postgres(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, "APIKIT_TEST_POSTGRES", "a PostgreSQL URL")
}

// Redis returns the Redis URL in APIKIT_TEST_REDIS, for example
// redis://127.0.0.1:6379/0.
func Redis(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, "APIKIT_TEST_REDIS", "a Redis URL")
}

// Program returns the path of the named program on PATH.
func Program(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(tb, name+" is not on PATH ("+err.Error()+")")
	}
	return path
}

func lookup(tb testing.TB, env, what string) string {
	tb.Helper()
	v := os.Getenv(env)
	if v == "" {
		missing(tb, "set "+env+" to "+what+" to run this test")
	}
	return v
}

func missing(tb testing.TB, why string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("required in CI (CI=true): %s", why)
	}
	tb.Skip(why)
}
