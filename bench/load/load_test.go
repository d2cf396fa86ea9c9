package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestSmoke runs the tool as a user does, briefly, on the scenarios that
// need no services: every scenario serves its requests without errors,
// and the table and the JSON report say so.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load")
	}
	out := filepath.Join(t.TempDir(), "results.json")
	var stdout, stderr bytes.Buffer
	args := []string{"-scenarios", "auth,auth+limit,auth+plan,many-keys,favorites-read,favorites-write,favorites-read-raw,favorites-write-raw",
		"-duration", "300ms", "-rounds", "1", "-workers", "4", "-rate", "100", "-many-keys", "500", "-json", out}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("load: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 9 || rep.Results[0].Scenario != "bare" {
		t.Fatalf("results for %d scenarios, first %q; want bare and the 8 asked for", len(rep.Results), rep.Results[0].Scenario)
	}
	for _, r := range rep.Results {
		if r.Requests == 0 || r.Errors != 0 || r.RPS <= 0 || r.RatioBare <= 0 {
			t.Errorf("%s: %d requests, %d errors, %.0f req/s, ratio %.2f", r.Scenario, r.Requests, r.Errors, r.RPS, r.RatioBare)
		}
		if twin := strings.HasPrefix(r.Scenario, "favorites-") && !strings.HasSuffix(r.Scenario, "-raw"); twin != (r.RatioRaw > 0) {
			t.Errorf("%s: ratio to the raw twin %.2f", r.Scenario, r.RatioRaw)
		}
		if !strings.Contains(stdout.String(), r.Scenario) {
			t.Errorf("the table has no row for %s:\n%s", r.Scenario, stdout.String())
		}
	}
}

func TestUnknownScenario(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-scenarios", "nope", "-rounds", "1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `unknown scenario "nope"`) {
		t.Errorf("err = %v", err)
	}
}

// TestAuthPlan: the auth+plan scenario decides every request under a plan
// of two limits and a quota: its responses list three policies.
func TestAuthPlan(t *testing.T) {
	i := slices.IndexFunc(scenarios(options{}), func(s scenario) bool { return s.name == "auth+plan" })
	tg, err := scenarios(options{})[i].start(t.Context(), options{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	var vt vegeta.Target
	if err := tg.targeter(&vt); err != nil {
		t.Fatal(err)
	}
	req, err := vt.Request()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Logf("response header: %q", resp.Header)
	if resp.StatusCode != http.StatusOK || len(strings.Split(resp.Header.Get("RateLimit-Policy"), ", ")) != 3 {
		t.Errorf("%s, RateLimit-Policy %q; want 200 and three policies", resp.Status, resp.Header.Values("RateLimit-Policy"))
	}
}
