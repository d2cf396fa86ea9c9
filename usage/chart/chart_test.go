package chart_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
	"github.com/apikit/apikit/usage/chart"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var end = time.Date(2026, 3, 30, 15, 0, 0, 0, time.UTC)

func sample() []chart.Day {
	var points []usage.Point
	for i := range 30 {
		d := time.Date(2026, 3, 1+i, 0, 0, 0, 0, time.UTC)
		points = append(points, usage.Point{Start: d, Counts: usage.Counts{OK: int64(100 + 37*i%250), ClientError: int64(i % 7), Limited: int64(i % 5 * 3), ServerError: int64(i % 11 / 10)}})
	}
	return chart.Days(points, end, 30)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// checkSVG checks what every chart promises: well-formed, accessible, no
// scripts, handlers or style attributes, scales with its container.
func checkSVG(t *testing.T, svg []byte, id string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local == "script" || se.Name.Local == "foreignObject" {
				t.Errorf("element <%s>", se.Name.Local)
			}
			for _, a := range se.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") || a.Name.Local == "style" || a.Name.Local == "href" {
					t.Errorf("attribute %s on <%s>", a.Name.Local, se.Name.Local)
				}
			}
		}
	}
	s := string(svg)
	for _, want := range []string{`role="img"`, `aria-labelledby="` + id + `-title ` + id + `-desc"`, `<title id="` + id + `-title">`, `<desc id="` + id + `-desc">`, `viewBox="0 0 420 `, `width="100%"`} {
		if !strings.Contains(s, want) {
			t.Errorf("the SVG lacks %s", want)
		}
	}
}

func TestDaily(t *testing.T) {
	days := sample()
	if len(days) != 30 || !days[0].Date.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Days: %d days from %v", len(days), days[0].Date)
	}
	var a, b bytes.Buffer
	if err := chart.Daily(&a, days, chart.Options{ID: "total"}); err != nil {
		t.Fatal(err)
	}
	if err := chart.Daily(&b, days, chart.Options{ID: "total"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two renderings differ")
	}
	checkSVG(t, a.Bytes(), "total")
	golden(t, "daily.svg", a.Bytes())
}

func TestDailyEscapes(t *testing.T) {
	var buf bytes.Buffer
	if err := chart.Daily(&buf, sample(), chart.Options{ID: "k1", Title: `Key "<script>alert(1)</script>" & co`}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>") {
		t.Errorf("the title was not escaped:\n%s", buf.String())
	}
	checkSVG(t, buf.Bytes(), "k1")
	if err := chart.Daily(&buf, nil, chart.Options{ID: `x" onload="alert(1)`}); err == nil {
		t.Error("an ID with quotes was accepted")
	}
}

func TestDailyEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := chart.Daily(&buf, chart.Days(nil, end, 30), chart.Options{}); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, buf.Bytes(), "usage")
	if !strings.Contains(buf.String(), "0 requests from March 1 to March 30, 2026") {
		t.Errorf("desc of no usage:\n%s", buf.String())
	}
}

func TestQuota(t *testing.T) {
	for _, c := range []struct {
		name        string
		used, limit int64
		want        string
	}{
		{"quota-half.svg", 5_000, 10_000, "5,000 of 10,000 used (50%)"},
		{"quota-near.svg", 8_500, 10_000, "quota-near"},
		{"quota-spent.svg", 10_200, 10_000, "quota-spent"},
		{"quota-none.svg", 1234, 0, "1,234 used; no quota"},
	} {
		var buf bytes.Buffer
		if err := chart.Quota(&buf, c.used, c.limit, chart.Options{ID: "quota"}); err != nil {
			t.Fatal(err)
		}
		checkSVG(t, buf.Bytes(), "quota")
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("%s lacks %q:\n%s", c.name, c.want, buf.String())
		}
		golden(t, c.name, buf.Bytes())
	}
}

func TestTable(t *testing.T) {
	days := sample()
	rows := chart.Rows(days)
	if len(rows) != 30 || rows[0].Date != "2026-03-30" || rows[0].Requests != days[29].Requests() {
		t.Errorf("Rows = %+v", rows[:1])
	}
	var buf bytes.Buffer
	if err := chart.WriteTable(&buf, days, "Requests per day <all keys>"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "<caption>Requests per day &lt;all keys&gt;</caption>") || strings.Count(buf.String(), "<tr>") != 31 {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestNumber(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := chart.Number(n); got != want {
			t.Errorf("Number(%d) = %q; want %q", n, got, want)
		}
	}
}
