// Command load measures apikit under HTTP load with vegeta: each scenario
// serves one stack of middleware on loopback and is attacked, first at
// full speed (requests per second the stack sustains) and then at a fixed
// rate well below saturation (latency percentiles without queueing), and
// every figure is reported next to the bare handler measured in the same
// run.
//
//	go run ./bench/load                                # every scenario that can run here
//	go run ./bench/load -scenarios bare,auth,auth+limit,auth+plan -duration 10s -rounds 3
//	go run ./bench/load -url https://api.example.com -key "$KEY" -scenarios remote
//	go run ./bench/load -json results.json
//
// Scenarios:
//
//	bare               a trivial handler, no middleware: the physical limit
//	bare+headers       bare, with the five rate limit header fields of auth+plan, constant
//	auth               apikey middleware, cache hit
//	auth+limit         plus the per-key in-memory rate limiter
//	auth+plan          auth plus plan.Middleware: two limits and a monthly quota per user, in memory
//	auth+plan+metering auth+plan with the usage meter (counts flushed to SQLite every 10s),
//	                   wired as the FavoritesAPI example wires them
//	auth+limit+redis   with the Redis limiter (needs -redis or REDIS_URL)
//	auth+limit+redis-local   with redislimit.Local: local decisions, synced with Redis every 100ms
//	favorites-read     GET /v1/favorites of the full FavoritesAPI, SQLite
//	favorites-write    POST /v1/favorites of the full FavoritesAPI, SQLite
//	favorites-read-pg, favorites-write-pg   the same on PostgreSQL (needs -postgres or DATABASE_URL)
//	favorites-*-raw    the raw twin of each favorites scenario: the same SQL in a minimal
//	                   net/http + database/sql handler, no apikit; the favorites rows
//	                   show their ratio to it ("vs raw")
//	many-keys          auth+limit with 100,000 distinct keys in rotation (cache misses)
//	remote             GET /v1/me of a running server given by -url and -key
//
// Rates are limited only by the machine: run it on loopback against
// servers you own.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "load:", err)
		}
		os.Exit(2)
	}
}

// options are the command's flags.
type options struct {
	scenarios  []string
	duration   time.Duration
	rounds     int
	workers    int
	rate       int
	jsonOut    string
	redisURL   string
	pgURL      string
	url, key   string
	manyKeys   int
	cpuProfile string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	names := fs.String("scenarios", "", "comma-separated scenarios (default: all that can run here)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each attack")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; every scenario runs once per round, interleaved, and the median is reported")
	fs.IntVar(&o.workers, "workers", 32, "concurrent connections of the full-speed attack")
	fs.IntVar(&o.rate, "rate", 1000, "requests per second of the fixed-rate attack, for latencies (0: skip it)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.redisURL, "redis", os.Getenv("REDIS_URL"), "Redis URL for auth+limit+redis")
	fs.StringVar(&o.pgURL, "postgres", os.Getenv("DATABASE_URL"), "PostgreSQL URL for the -pg scenarios")
	fs.StringVar(&o.url, "url", "", "base URL of a running server, for the remote scenario")
	fs.StringVar(&o.key, "key", os.Getenv("KEY"), "API key for the remote scenario")
	fs.IntVar(&o.manyKeys, "many-keys", 100_000, "number of distinct keys of many-keys")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (servers and load generator) to this file; samples are labelled with their scenario (go tool pprof -tagfocus scenario=NAME)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.workers < 1 || o.duration <= 0 {
		return fmt.Errorf("-rounds, -workers and -duration must be positive")
	}
	if *names != "" {
		o.scenarios = strings.Split(*names, ",")
	}
	logger := log.New(stderr, "", 0)
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := measure(ctx, o, logger)
	if err != nil {
		return err
	}
	printTable(stdout, res)
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Report is the outcome of a run, as written by -json.
type Report struct {
	Started   time.Time `json:"started"`
	Machine   string    `json:"machine"`
	Duration  string    `json:"duration_per_attack"`
	Rounds    int       `json:"rounds"`
	Workers   int       `json:"workers"`
	FixedRate int       `json:"fixed_rate"`
	Results   []Result  `json:"results"`
}

// Result is the median over the rounds of one scenario.
type Result struct {
	Scenario string `json:"scenario"`
	// Full-speed attack.
	RPS       float64 `json:"rps"`
	RatioBare float64 `json:"ratio_to_bare"`
	// RatioBareRounds is the median over the rounds of RPS over bare's
	// RPS in the same round ("per round" in the table).
	RatioBareRounds float64 `json:"ratio_to_bare_per_round"`
	// CPUPerRequest is the process's CPU time (servers and load
	// generator together) per request of the full-speed attack, and
	// RatioBareCPU bare's over this scenario's ("by CPU"): what the
	// throughput ratio would be on a machine that runs nothing else, and
	// far steadier than it on a shared one. It does not count the CPU of
	// Redis or PostgreSQL.
	CPUPerRequest time.Duration `json:"cpu_per_request_ns"`
	RatioBareCPU  float64       `json:"ratio_to_bare_by_cpu"`
	// RatioRaw is RPS over that of the scenario's raw twin (the same
	// SQL with no apikit), for the favorites scenarios run with theirs,
	// and RatioRawCPU the twin's CPU time per request over this one's.
	RatioRaw    float64        `json:"ratio_to_raw,omitempty"`
	RatioRawCPU float64        `json:"ratio_to_raw_by_cpu,omitempty"`
	Requests    uint64         `json:"requests"`
	Errors      int            `json:"errors"`
	Statuses    map[string]int `json:"status_codes"`
	RoundsRPS   []float64      `json:"rounds_rps"`
	// Fixed-rate attack.
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	P99Added time.Duration `json:"p99_added_to_bare_ns"`
	RateSent float64       `json:"fixed_rate_rps"`
	Skipped  string        `json:"skipped,omitempty"`
}

func median[T cmp.Ordered](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		var zero T
		return zero
	}
	return s[len(s)/2]
}
