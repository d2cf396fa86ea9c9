package store_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/testkit/testenv"
)

// goTool returns the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the go command; skipped with -short")
	}
	return testenv.Program(t, "go") // in CI a missing go command fails the test
}

// A program that uses API keys and rate limits on one of the stores links
// neither Stripe's client nor Redis's: package store implements billing's
// contract through billing/subscription and billing/meter's outbox
// through that package, which links no Stripe client (its Stripe sender
// is billing/meter/stripemeter), and ratelimit's Redis limiter is a
// package of its own.
func TestPayOnlyForWhatYouImport(t *testing.T) {
	g := goTool(t)
	for _, backend := range []string{"sqlite", "puresqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			out, err := exec.Command(g, "list", "-deps", "./testdata/keysonly/"+backend).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			// The list is the program's (which imports apikey), so the
			// checks below do not pass by running over nothing.
			if !slices.Contains(deps, "github.com/apikit/apikit/apikey") {
				t.Fatalf("go list -deps of the %s program does not list apikey: %q", backend, deps)
			}
			for _, d := range deps {
				for _, banned := range []string{"github.com/stripe/", "github.com/redis/", "github.com/go-redis/", "github.com/apikit/apikit/billing"} {
					if strings.HasPrefix(d, banned) && d != "github.com/apikit/apikit/billing/subscription" && d != "github.com/apikit/apikit/billing/meter" {
						t.Errorf("a keys-only program on %s links %s", backend, d)
					}
				}
			}
			t.Logf("%s: %d packages", backend, len(deps))
		})
	}
}

// store/sqlite/puresqlite builds without cgo, for scratch images.
func TestPureSQLiteBuildsWithoutCgo(t *testing.T) {
	g := goTool(t)
	cmd := exec.Command(g, "build", "-o", os.DevNull, "./testdata/keysonly/puresqlite")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}
