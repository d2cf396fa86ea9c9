package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// run1 is one attack's figures.
type run1 struct {
	rps      float64
	requests uint64
	errors   int
	statuses map[string]int
	p50, p90 time.Duration
	p99      time.Duration
	rateSent float64
	cpu      time.Duration // the process's CPU time per request of the full-speed attack
}

// measure starts the chosen scenarios, attacks each once per round in
// turn (so that drifts of a shared machine spread over all of them), and
// returns the medians.
func measure(ctx context.Context, o options, logger *log.Logger) (Report, error) {
	rep := Report{Started: time.Now().UTC(), Machine: machine(), Duration: o.duration.String(),
		Rounds: o.rounds, Workers: o.workers, FixedRate: o.rate}
	all := scenarios(o)
	var chosen []scenario
	if len(o.scenarios) == 0 {
		for _, s := range all {
			if s.needs == "" || s.name != "remote" {
				chosen = append(chosen, s)
			}
		}
	} else {
		for _, name := range o.scenarios {
			i := slices.IndexFunc(all, func(s scenario) bool { return s.name == name })
			if i < 0 {
				return rep, fmt.Errorf("unknown scenario %q", name)
			}
			chosen = append(chosen, all[i])
		}
	}
	if !slices.ContainsFunc(chosen, func(s scenario) bool { return s.name == "bare" }) {
		chosen = append([]scenario{all[0]}, chosen...) // the ratios need bare
	}
	dir, err := os.MkdirTemp("", "apikit-load-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)

	targets := map[string]*target{}
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()
	var runnable []scenario
	for _, s := range chosen {
		if s.needs != "" {
			logger.Printf("skipping %s: %s", s.name, s.needs)
			rep.Results = append(rep.Results, Result{Scenario: s.name, Skipped: s.needs})
			continue
		}
		logger.Printf("starting %s", s.name)
		start := time.Now()
		var t *target
		var err error
		// The scenario's goroutines (its server's among them) carry its
		// name as a profile label: go tool pprof -tagfocus scenario=NAME.
		pprof.Do(ctx, pprof.Labels("scenario", s.name), func(ctx context.Context) {
			t, err = s.start(ctx, o, dir)
		})
		if err != nil {
			return rep, fmt.Errorf("starting %s: %w", s.name, err)
		}
		logger.Printf("  ready in %v", time.Since(start).Round(time.Millisecond))
		targets[s.name] = t
		runnable = append(runnable, s)
	}

	runs := map[string][]run1{}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range runnable {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			var r run1
			pprof.Do(ctx, pprof.Labels("scenario", s.name), func(ctx context.Context) {
				r = attack(ctx, targets[s.name], o)
			})
			logger.Printf("round %d %-20s %9.0f req/s  p99 %-10v errors %d  %v", round, s.name, r.rps, r.p99, r.errors, r.statuses)
			runs[s.name] = append(runs[s.name], r)
		}
	}

	bare := summarize("bare", runs["bare"])
	for _, s := range runnable {
		res := summarize(s.name, runs[s.name])
		if bare.RPS > 0 {
			res.RatioBare = res.RPS / bare.RPS
		}
		// The median of each round's ratio to that round's bare: steadier
		// than the ratio of the medians when the machine's load drifts
		// from round to round.
		var ratios []float64
		for i, r := range runs[s.name] {
			if b := runs["bare"][i].rps; b > 0 {
				ratios = append(ratios, r.rps/b)
			}
		}
		res.RatioBareRounds = median(ratios)
		if res.CPUPerRequest > 0 {
			res.RatioBareCPU = float64(bare.CPUPerRequest) / float64(res.CPUPerRequest)
		}
		res.P99Added = res.P99 - bare.P99
		if twin, ok := runs[s.name+"-raw"]; ok {
			if raw := summarize(s.name+"-raw", twin); raw.RPS > 0 {
				res.RatioRaw = res.RPS / raw.RPS
				if res.CPUPerRequest > 0 {
					res.RatioRawCPU = float64(raw.CPUPerRequest) / float64(res.CPUPerRequest)
				}
			}
		}
		rep.Results = append(rep.Results, res)
	}
	order := map[string]int{}
	for i, s := range chosen {
		order[s.name] = i
	}
	slices.SortStableFunc(rep.Results, func(a, b Result) int { return order[a.Scenario] - order[b.Scenario] })
	return rep, nil
}

// attack runs the full-speed attack, then the fixed-rate one.
func attack(ctx context.Context, t *target, o options) run1 {
	var r run1
	r.statuses = map[string]int{}
	// vegeta leaves its keep-alive connections open when an attack ends:
	// each attack would add its connections (and their goroutines on
	// both sides, which every GC cycle scans) to every later attack's
	// process, so that a scenario's figures would depend on its place in
	// the run. Each attacker gets a transport of its own, closed after
	// its attack.
	tr := newTransport()
	full := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr}),
		vegeta.Workers(uint64(o.workers)), vegeta.MaxWorkers(uint64(o.workers)),
		vegeta.Connections(o.workers), vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
	cpu0 := processCPU()
	m := collect(ctx, full, full.Attack(t.targeter, vegeta.Rate{Freq: 0}, o.duration, "full"), t.ok, &r)
	r.rps, r.requests = m.Throughput, m.Requests
	if m.Requests > 0 {
		r.cpu = (processCPU() - cpu0) / time.Duration(m.Requests)
	}
	tr.CloseIdleConnections()
	if o.rate > 0 {
		tr := newTransport()
		fixed := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr}), vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
		m := collect(ctx, fixed, fixed.Attack(t.targeter, vegeta.Rate{Freq: o.rate, Per: time.Second}, o.duration, "fixed"), t.ok, &r)
		tr.CloseIdleConnections()
		r.p50, r.p90, r.p99, r.rateSent = m.Latencies.P50, m.Latencies.P90, m.Latencies.P99, m.Rate
	}
	return r
}

// newTransport returns a transport as vegeta.NewAttacker makes its own,
// which the options given after vegeta.Client then adjust.
func newTransport() *http.Transport {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: d.DialContext,
		TLSClientConfig: vegeta.DefaultTLSConfig, MaxIdleConnsPerHost: vegeta.DefaultConnections,
		MaxConnsPerHost: vegeta.DefaultMaxConnections}
}

// processCPU returns the CPU time this process (servers and load
// generator) has used: unlike throughput, CPU time per request hardly
// depends on what else the machine runs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func collect(ctx context.Context, a *vegeta.Attacker, results <-chan *vegeta.Result, ok uint16, r *run1) *vegeta.Metrics {
	var m vegeta.Metrics
	for res := range results {
		if ctx.Err() != nil {
			a.Stop()
		}
		m.Add(res)
		r.statuses[strconv.Itoa(int(res.Code))]++
		if res.Error != "" || res.Code != ok {
			r.errors++
		}
	}
	m.Close()
	return &m
}

func summarize(name string, runs []run1) Result {
	res := Result{Scenario: name, Statuses: map[string]int{}}
	var rps []float64
	var p50, p90, p99 []time.Duration
	var sent []float64
	var cpu []time.Duration
	for _, r := range runs {
		cpu = append(cpu, r.cpu)
		rps = append(rps, r.rps)
		p50, p90, p99 = append(p50, r.p50), append(p90, r.p90), append(p99, r.p99)
		sent = append(sent, r.rateSent)
		res.Requests += r.requests
		res.Errors += r.errors
		for k, v := range r.statuses {
			res.Statuses[k] += v
		}
	}
	res.RoundsRPS = rps
	res.RPS, res.P50, res.P90, res.P99, res.RateSent = median(rps), median(p50), median(p90), median(p99), median(sent)
	res.CPUPerRequest = median(cpu)
	return res
}

func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "\n%s; %d rounds of %s per attack; full speed with %d connections, latencies at %d req/s\n\n",
		rep.Machine, rep.Rounds, rep.Duration, rep.Workers, rep.FixedRate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tvs bare\tper round\tCPU/req\tby CPU\tvs raw\tp50\tp90\tp99\tp99 added\terrors\tstatuses\t")
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tskipped: %s\t\n", r.Scenario, r.Skipped)
			continue
		}
		var st []string
		for k, v := range r.Statuses {
			st = append(st, fmt.Sprintf("%s×%d", k, v))
		}
		slices.Sort(st)
		vsRaw := "-"
		if r.RatioRaw > 0 {
			vsRaw = fmt.Sprintf("%.0f%% (by CPU %.0f%%)", 100*r.RatioRaw, 100*r.RatioRawCPU)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f%%\t%.0f%%\t%.1fµs\t%.0f%%\t%s\t%v\t%v\t%v\t%v\t%d\t%s\t\n", r.Scenario, r.RPS, 100*r.RatioBare, 100*r.RatioBareRounds,
			float64(r.CPUPerRequest)/1e3, 100*r.RatioBareCPU, vsRaw,
			r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond),
			r.P99Added.Round(time.Microsecond), r.Errors, strings.Join(st, " "))
	}
	tw.Flush()
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %d CPUs (%s), %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.Version())
}
