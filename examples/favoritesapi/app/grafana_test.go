package app_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/apikit/apikit/examples/favoritesapi/app"
)

// dashboardPanel is what this test reads of a Grafana panel.
type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var (
	labelValues    = regexp.MustCompile(`label_values\(\s*([^,]+),\s*\w+\s*\)`) // Grafana's, in variables
	promQLStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promQLGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promQLRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promQLNumbers  = regexp.MustCompile(`\b\d+(?:\.\d+)?(?:e\d+)?\b`)
	promQLIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

// metricNames returns the metric names a PromQL expression selects: its
// identifiers that are neither functions, keywords, labels nor variables.
func metricNames(expr string) []string {
	expr = labelValues.ReplaceAllString(expr, "$1")
	expr = promQLStrings.ReplaceAllString(expr, `""`)
	expr = promQLGrouping.ReplaceAllString(expr, " ")
	expr = promQLRanges.ReplaceAllString(expr, " ")
	expr = promQLNumbers.ReplaceAllString(expr, " ")
	// Label matchers: drop what is between braces.
	var b strings.Builder
	depth := 0
	for _, r := range expr {
		switch {
		case r == '{':
			depth++
		case r == '}':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	var names []string
	for _, m := range promQLIdent.FindAllStringSubmatch(b.String(), -1) {
		switch {
		case m[1] != "": // a function call
		case m[0] == "and" || m[0] == "or" || m[0] == "unless" || m[0] == "bool" || m[0] == "offset":
		default:
			names = append(names, m[0])
		}
	}
	return names
}

// series returns the names of the series a Prometheus text exposition
// has.
func series(body string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	return names
}

// Every query of the Grafana dashboard names metrics the example exports:
// its /metrics, scraped after some traffic, has every series the
// dashboard selects.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string           `json:"title"`
		UID        string           `json:"uid"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard has title %q and uid %q; want both", d.Title, d.UID)
	}

	s := startServer(t, sqliteDB, app.Config{})
	c := newCustomer(t, s, "grafana@example.com")
	c.call(t, "GET", "/v1/favorites", "")
	exported := series(metrics(t, s))

	exprs := map[string]string{} // expression: panel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs[tg.Expr] = p.Title
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs[q["query"].(string)] = "variable " + v.Name
		}
	}
	for _, want := range []string{"Request rate by route", "p50 latency by route", "p99 latency by route", "429s", "Cache hit ratio", "Mail queue depth", "Stripe webhooks by result"} {
		found := false
		for _, title := range exprs {
			found = found || title == want
		}
		if !found {
			t.Errorf("dashboard has no panel %q", want)
		}
	}
	for expr, title := range exprs {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", title, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %q selects %s, which /metrics does not export", title, expr, n)
			}
		}
	}
	t.Logf("%d queries checked", len(exprs))
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{job=~"$job",code="4xx"}[$__rate_interval])))`: "x_bucket",
		`sum(rate(a_total[5m])) / (sum(rate(b{l="x y"}[5m])) + c)`:                                                "a_total b c",
		`sum by (instance) (process_resident_memory_bytes) / 1e9`:                                                 "process_resident_memory_bytes",
		`label_values(apikit_keys_verified, job)`:                                                                 "apikit_keys_verified",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}
