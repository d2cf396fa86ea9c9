// Package chart renders usage as server-side SVG for pages whose Content
// Security Policy forbids scripts: requests per day stacked by outcome,
// and a quota bar. The SVG has no scripts, no event handlers and no style
// attributes (colours are presentation attributes, and every element has
// a class for a stylesheet to override); all text is escaped by
// html/template. Each chart is an image with a <title> and a <desc>
// (role="img", aria-labelledby), scales to its container's width
// (viewBox, width="100%"; 420 units wide, so that 12-unit text stays
// about 10 pixels tall on a phone), and renders the same bytes for the same input,
// for golden tests. [Rows] and [WriteTable] give the same numbers as a
// table, the fallback for screen readers and text browsers.
package chart

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/usage"
)

// Day is one day's requests by outcome.
type Day struct {
	Date time.Time // the day's start, UTC
	usage.Counts
}

// Days turns the points of a usage series (by the day, any keys) into
// the n days ending with the day of end, oldest first, with zeros for
// days without usage: the input of [Daily].
func Days(points []usage.Point, end time.Time, n int) []Day {
	last := usage.Day.Truncate(end)
	first := last.AddDate(0, 0, -(n - 1))
	days := make([]Day, n)
	for i := range days {
		days[i].Date = first.AddDate(0, 0, i)
	}
	for _, p := range points {
		d := usage.Day.Truncate(p.Start)
		i := int(d.Sub(first) / (24 * time.Hour))
		if i >= 0 && i < n {
			days[i].Counts.Add(p.Counts)
		}
	}
	return days
}

// Options configures a chart.
type Options struct {
	// ID prefixes the ids of the chart's elements, so that several
	// charts can share a page: a letter then letters, digits, '-' or '_'.
	// Empty means "usage".
	ID string
	// Title is the chart's accessible name; empty means a default that
	// says what it shows.
	Title string
}

func (o *Options) check(defTitle string) error {
	if o.ID == "" {
		o.ID = "usage"
	}
	for i, c := range o.ID {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_')) {
			return errors.New("chart: Options.ID must be a letter followed by letters, digits, '-' or '_'")
		}
	}
	if o.Title == "" {
		o.Title = defTitle
	}
	return nil
}

// The outcomes in stacking order, bottom first, with their colours
// (readable for common colour blindness, and told apart by the legend's
// order too).
var series = []struct {
	name, label, colour string
	of                  func(usage.Counts) int64
}{
	{"ok", "Succeeded", "#2b6cb0", func(c usage.Counts) int64 { return c.OK }},
	{"client-error", "Client errors", "#d69e2e", func(c usage.Counts) int64 { return c.ClientError }},
	{"rate-limited", "Rate limited", "#805ad5", func(c usage.Counts) int64 { return c.Limited }},
	{"server-error", "Server errors", "#c53030", func(c usage.Counts) int64 { return c.ServerError }},
}

const (
	width, height        = 420, 240
	left, right, top, bt = 40, 6, 44, 24
)

type rect struct {
	Class, Fill, Title string
	X, Y, W, H         string
}

type label struct {
	X, Y, Text, Anchor string
}

type legend struct {
	Class, Fill, Label string
	X, Y, TX, TY       string // the swatch's and the text's positions
}

type dailyData struct {
	ID, Title, Desc     string
	W, H                int
	Bars                []rect
	Grid                []label // Y is the line's y; Text the value
	XLabels             []label
	Legend              []legend
	PlotLeft, PlotRight int
	Axis                string
}

var tmpl = template.Must(template.New("daily").Parse(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.W}} {{.H}}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{{.ID}}-title {{.ID}}-desc" class="usage-chart" font-family="system-ui, sans-serif" font-size="12">
<title id="{{.ID}}-title">{{.Title}}</title>
<desc id="{{.ID}}-desc">{{.Desc}}</desc>
{{range .Legend}}<rect class="legend-{{.Class}}" x="{{.X}}" y="{{.Y}}" width="10" height="10" fill="{{.Fill}}"/><text x="{{.TX}}" y="{{.TY}}" fill="currentColor">{{.Label}}</text>
{{end}}{{range .Grid}}<line class="grid" x1="{{$.PlotLeft}}" x2="{{$.PlotRight}}" y1="{{.Y}}" y2="{{.Y}}" stroke="#a0aec0" stroke-width="0.5"/><text x="{{.X}}" y="{{.Y}}" text-anchor="end" dominant-baseline="middle" fill="currentColor">{{.Text}}</text>
{{end}}{{range .Bars}}<rect class="bar-{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{.Fill}}"><title>{{.Title}}</title></rect>
{{end}}{{range .XLabels}}<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}" fill="currentColor">{{.Text}}</text>
{{end}}</svg>
`))

// f formats a coordinate with one decimal, the same way every time.
func f(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

// niceMax returns the smallest of 1, 2, 5 × 10^k at least n.
func niceMax(n int64) int64 {
	if n <= 0 {
		return 1
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		if p > 1e17 {
			return n
		}
	}
}

// Number formats n with thousands separators: 12,345.
func Number(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Daily writes a bar chart of requests per day, each bar stacked by
// outcome (succeeded, client errors, rate limited, server errors), with
// a <title> per bar segment and a description giving the totals. days
// come from [Days], oldest first.
func Daily(w io.Writer, days []Day, opts Options) error {
	if err := opts.check(fmt.Sprintf("Requests per day, last %d days", len(days))); err != nil {
		return err
	}
	d := dailyData{ID: opts.ID, Title: opts.Title, W: width, H: height, PlotLeft: left, PlotRight: width - right}
	var total usage.Counts
	var peak int64
	var peakDay time.Time
	for _, day := range days {
		total.Add(day.Counts)
		if r := day.Requests(); r > peak {
			peak, peakDay = r, day.Date
		}
	}
	if len(days) == 0 {
		d.Desc = "No days to show."
	} else {
		d.Desc = fmt.Sprintf("%s requests from %s to %s: %s succeeded, %s client errors, %s rate limited, %s server errors.",
			Number(total.Requests()), days[0].Date.Format("January 2"), days[len(days)-1].Date.Format("January 2, 2006"),
			Number(total.OK), Number(total.ClientError), Number(total.Limited), Number(total.ServerError))
		if peak > 0 {
			d.Desc += fmt.Sprintf(" The busiest day was %s with %s requests.", peakDay.Format("January 2"), Number(peak))
		}
	}
	ceil := niceMax(peak)
	plotW, plotH := float64(width-left-right), float64(height-top-bt)
	y := func(v int64) float64 { return float64(top) + plotH - plotH*float64(v)/float64(ceil) }
	for _, v := range []int64{0, ceil / 2, ceil} {
		if v == ceil/2 && ceil%2 != 0 {
			continue
		}
		d.Grid = append(d.Grid, label{X: f(left - 6), Y: f(y(v)), Text: Number(v)})
	}
	for i, s := range series {
		d.Legend = append(d.Legend, legend{Class: s.name, Fill: s.colour, Label: s.label,
			X: f(float64(left + i%2*180)), Y: f(float64(4 + i/2*16)), TX: f(float64(left+i%2*180) + 14), TY: f(float64(13 + i/2*16))})
	}
	if len(days) > 0 {
		slot := plotW / float64(len(days))
		bw := slot * 0.7
		for i, day := range days {
			x := float64(left) + slot*float64(i) + (slot-bw)/2
			var base int64
			for _, s := range series {
				v := s.of(day.Counts)
				if v == 0 {
					continue
				}
				d.Bars = append(d.Bars, rect{Class: s.name, Fill: s.colour,
					Title: fmt.Sprintf("%s: %s %s", day.Date.Format(time.DateOnly), Number(v), strings.ToLower(s.label)),
					X:     f(x), Y: f(y(base + v)), W: f(bw), H: f(y(base) - y(base+v))})
				base += v
			}
			if step := max(1, len(days)/5); (len(days)-1-i)%step == 0 {
				l := label{X: f(x + bw/2), Y: f(float64(height - 8)), Text: day.Date.Format("Jan 2"), Anchor: "middle"}
				if i == len(days)-1 { // keep the last label inside the image
					l.X, l.Anchor = f(x+bw), "end"
				}
				d.XLabels = append(d.XLabels, l)
			}
		}
	}
	return tmpl.Execute(w, d)
}

type quotaData struct {
	ID, Title, Desc, Text string
	Fill, Class, Used     string
}

var quotaTmpl = template.Must(template.New("quota").Parse(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 420 56" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{{.ID}}-title {{.ID}}-desc" class="quota-bar" font-family="system-ui, sans-serif" font-size="14">
<title id="{{.ID}}-title">{{.Title}}</title>
<desc id="{{.ID}}-desc">{{.Desc}}</desc>
<rect class="quota-track" x="0" y="28" width="420" height="20" rx="4" fill="#e2e8f0"/>
<rect class="quota-used {{.Class}}" x="0" y="28" width="{{.Used}}" height="20" rx="4" fill="{{.Fill}}"/>
<text x="0" y="18" fill="currentColor">{{.Text}}</text>
</svg>
`))

// Quota writes a bar of used out of limit units, coloured by how close
// it is to the limit (from 80 % and at 100 %). A limit of 0 or less means
// no quota: the bar is empty and the text says so.
func Quota(w io.Writer, used, limit int64, opts Options) error {
	if err := opts.check("Quota used this period"); err != nil {
		return err
	}
	d := quotaData{ID: opts.ID, Title: opts.Title, Fill: "#2b6cb0", Class: "quota-ok", Used: "0.0"}
	if limit <= 0 {
		d.Text = fmt.Sprintf("%s used; no quota", Number(used))
		d.Desc = d.Text + "."
		return quotaTmpl.Execute(w, d)
	}
	pct := used * 100 / limit
	switch {
	case used >= limit:
		d.Fill, d.Class = "#c53030", "quota-spent"
	case pct >= 80:
		d.Fill, d.Class = "#d69e2e", "quota-near"
	}
	d.Used = f(420 * float64(min(max(used, 0), limit)) / float64(limit))
	d.Text = fmt.Sprintf("%s of %s used (%d%%)", Number(used), Number(limit), pct)
	d.Desc = fmt.Sprintf("%s of the %s units of this period's quota are used: %d%%, %s left.", Number(used), Number(limit), pct, Number(max(limit-used, 0)))
	return quotaTmpl.Execute(w, d)
}

// Row is one day of the table fallback of a [Daily] chart.
type Row struct {
	Date                                            string // 2026-03-10
	Requests, OK, ClientError, Limited, ServerError int64
}

// Rows returns the table fallback of a Daily chart of days: one row per
// day, newest first.
func Rows(days []Day) []Row {
	rows := make([]Row, 0, len(days))
	for i := len(days) - 1; i >= 0; i-- {
		d := days[i]
		rows = append(rows, Row{Date: d.Date.Format(time.DateOnly), Requests: d.Requests(), OK: d.OK,
			ClientError: d.ClientError, Limited: d.Limited, ServerError: d.ServerError})
	}
	return rows
}

var tableTmpl = template.Must(template.New("table").Parse(`<table class="usage-table">
<caption>{{.Caption}}</caption>
<thead><tr><th scope="col">Day</th><th scope="col">Requests</th><th scope="col">Succeeded</th><th scope="col">Client errors</th><th scope="col">Rate limited</th><th scope="col">Server errors</th></tr></thead>
<tbody>
{{range .Rows}}<tr><th scope="row">{{.Date}}</th><td>{{.Requests}}</td><td>{{.OK}}</td><td>{{.ClientError}}</td><td>{{.Limited}}</td><td>{{.ServerError}}</td></tr>
{{end}}</tbody>
</table>
`))

// WriteTable writes the [Rows] of days as an HTML table with the
// caption.
func WriteTable(w io.Writer, days []Day, caption string) error {
	return tableTmpl.Execute(w, struct {
		Caption string
		Rows    []Row
	}{caption, Rows(days)})
}
