package app

import (
	"bytes"
	"context"
	"html/template"
	"strconv"
	"time"

	"github.com/apikit/apikit/usage"
	"github.com/apikit/apikit/usage/chart"
)

// chartDays is how many days the dashboard's charts show.
const chartDays = 30

// usageChart is one chart of the dashboard: requests per day over the
// last chartDays days, stacked by outcome, a quota bar for the period,
// and the same numbers as a table for screen readers and text browsers.
// All three are rendered on the server: the pages run no scripts.
type usageChart struct {
	ID       string // "total", or "key-" and the key's id
	Name     string // "All keys", or the key's name
	Requests int64  // over the chartDays days
	Daily    template.HTML
	Quota    template.HTML // nil-safe: empty without a quota bar
	Table    template.HTML
}

// usageCharts are the dashboard's charts: the account's, then each key's.
type usageCharts struct {
	Total usageChart
	Keys  []usageChart
}

// usageCharts reads the user's usage by the day and renders the charts.
// quota is what the user used of their plan's quota this period and the
// quota (limit 0: none), per key from the counts since periodStart.
func (s *Server) usageCharts(ctx context.Context, userID int64, keys []keyView, periodStart time.Time, used, limit int64) (*usageCharts, error) {
	now := s.now().UTC()
	from := usage.Day.Truncate(now).AddDate(0, 0, -(chartDays - 1))
	if !periodStart.IsZero() && periodStart.Before(from) {
		from = usage.Day.Truncate(periodStart)
	}
	counts, err := s.store.Counts(ctx, usage.Query{
		UserID: strconv.FormatInt(userID, 10), From: from, To: usage.Day.Truncate(now).AddDate(0, 0, 1), Granularity: usage.Day,
	})
	if err != nil {
		return nil, err
	}
	series := usage.Series(counts)
	byKey := make(map[string]usage.KeyUsage, len(series))
	var all []usage.Point
	for _, k := range series {
		byKey[k.KeyID] = k
		all = append(all, k.Series...)
	}
	periodDay := usage.Day.Truncate(periodStart)
	inPeriod := func(points []usage.Point) int64 {
		var cost int64
		for _, p := range points {
			if !p.Start.Before(periodDay) {
				cost += p.Cost
			}
		}
		return cost
	}
	total, err := renderChart("total", "All keys", chart.Days(all, now, chartDays), used, limit, true)
	if err != nil {
		return nil, err
	}
	charts := &usageCharts{Total: total}
	for _, k := range keys {
		ku, ok := byKey[k.ID]
		if !ok && !k.Usable {
			continue // a revoked key without usage in the range
		}
		c, err := renderChart("key-"+k.ID, k.Name, chart.Days(ku.Series, now, chartDays), inPeriod(ku.Series), limit, limit > 0)
		if err != nil {
			return nil, err
		}
		charts.Keys = append(charts.Keys, c)
	}
	return charts, nil
}

// renderChart renders one chart of days, with a quota bar of used of
// limit if withQuota.
func renderChart(id, name string, days []chart.Day, used, limit int64, withQuota bool) (usageChart, error) {
	c := usageChart{ID: id, Name: name}
	for _, d := range days {
		c.Requests += d.Requests()
	}
	var buf bytes.Buffer
	title := "Requests per day, last " + strconv.Itoa(chartDays) + " days: " + name
	if err := chart.Daily(&buf, days, chart.Options{ID: id, Title: title}); err != nil {
		return c, err
	}
	c.Daily = template.HTML(buf.String()) // chart escapes its text with html/template
	if withQuota {
		buf.Reset()
		qt := "Quota used this period"
		if id != "total" {
			qt = "This key's share of the quota this period: " + name
		}
		if err := chart.Quota(&buf, used, limit, chart.Options{ID: id + "-quota", Title: qt}); err != nil {
			return c, err
		}
		c.Quota = template.HTML(buf.String())
	}
	buf.Reset()
	if err := chart.WriteTable(&buf, days, title); err != nil {
		return c, err
	}
	c.Table = template.HTML(buf.String())
	return c, nil
}
