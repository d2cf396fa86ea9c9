package chart_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/apikit/apikit/usage"
	"github.com/apikit/apikit/usage/chart"
)

// A dashboard shows the last 30 days of a user's keys (the series of GET
// /v1/usage by the day, or usage.Series of store.Counts) and the quota.
func ExampleDaily() {
	now := time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)
	points := []usage.Point{
		{Start: time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), Counts: usage.Counts{OK: 120, Limited: 4}},
		{Start: time.Date(2026, 3, 30, 0, 0, 0, 0, time.UTC), Counts: usage.Counts{OK: 80, ServerError: 1}},
	}
	var svg bytes.Buffer
	if err := chart.Daily(&svg, chart.Days(points, now, 30), chart.Options{ID: "all-keys"}); err != nil {
		panic(err)
	}
	for _, line := range strings.Split(svg.String(), "\n")[1:3] {
		fmt.Println(line)
	}
	// Output:
	// <title id="all-keys-title">Requests per day, last 30 days</title>
	// <desc id="all-keys-desc">205 requests from March 1 to March 30, 2026: 200 succeeded, 0 client errors, 4 rate limited, 1 server errors. The busiest day was March 29 with 124 requests.</desc>
}

func ExampleQuota() {
	var svg bytes.Buffer
	chart.Quota(&svg, 8_500, 10_000, chart.Options{ID: "quota"})
	fmt.Println(strings.Split(svg.String(), "\n")[2])
	// Output: <desc id="quota-desc">8,500 of the 10,000 units of this period&#39;s quota are used: 85%, 1,500 left.</desc>
}

// The table fallback of the chart, for screen readers and text browsers.
func ExampleWriteTable() {
	now := time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)
	days := chart.Days([]usage.Point{{Start: now, Counts: usage.Counts{OK: 7, ClientError: 1}}}, now, 2)
	var html bytes.Buffer
	chart.WriteTable(&html, days, "Requests per day")
	fmt.Print(html.String())
	// Output:
	// <table class="usage-table">
	// <caption>Requests per day</caption>
	// <thead><tr><th scope="col">Day</th><th scope="col">Requests</th><th scope="col">Succeeded</th><th scope="col">Client errors</th><th scope="col">Rate limited</th><th scope="col">Server errors</th></tr></thead>
	// <tbody>
	// <tr><th scope="row">2026-03-30</th><td>8</td><td>7</td><td>1</td><td>0</td><td>0</td></tr>
	// <tr><th scope="row">2026-03-29</th><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td></tr>
	// </tbody>
	// </table>
}
