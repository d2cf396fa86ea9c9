package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	apikitusage "github.com/apikit/apikit/usage"
)

// usageCmd prints an account's usage as GET /v1/usage reports it to the
// account's keys (totals, then each key), or lists the meter events
// Stripe rejected (--rejected), or sends one of them again (--requeue).
func usageCmd(ctx context.Context, cfg app.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "email address of the account")
	from := fs.String("from", "", "start of the range: a date (2026-03-01) or an RFC 3339 time (default: the current period's start)")
	to := fs.String("to", "", "end of the range, excluded (default: the current period's end)")
	gran := fs.String("granularity", "", "hour or day (default day)")
	key := fs.String("key", "", "one key's id (default: every key of the account)")
	rejected := fs.Bool("rejected", false, "list the meter events Stripe rejected, instead")
	requeue := fs.String("requeue", "", "send the rejected meter event with this identifier again, instead")
	limit := fs.Int("limit", 100, "with --rejected, the most events listed")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{"usage takes no arguments besides its flags"}
	}
	switch {
	case *rejected || *requeue != "":
		if *email != "" || (*rejected && *requeue != "") {
			return usageError{"usage --rejected and --requeue go without --email, and not together"}
		}
		st, err := openMigrated(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		if *requeue != "" {
			found, err := st.RequeueMeterEvent(ctx, *requeue, time.Now())
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("no meter event has the identifier %q", *requeue)
			}
			fmt.Fprintf(stdout, "requeued %s: the running servers send it on their next pass\n", *requeue)
			return nil
		}
		events, err := st.MeterEvents(ctx, meter.Rejected, *limit)
		if err != nil {
			return err
		}
		return writeRejected(stdout, events)
	case *email == "":
		return usageError{"usage needs --email (or --rejected)"}
	}
	q := url.Values{}
	for name, v := range map[string]string{"from": *from, "to": *to, "granularity": *gran, "key_id": *key} {
		if v != "" {
			q.Set(name, v)
		}
	}
	// The whole service, so that the plan and quota are those the API
	// reports; it reports no meter events from this process.
	srv, done, err := newService(ctx, cfg, app.Options{Logger: logger, Stderr: stderr, MeterInterval: -1})
	if err != nil {
		return err
	}
	defer done()
	resp, err := srv.UsageReport(ctx, *email, q)
	if errors.Is(err, app.ErrNoSuchUser) {
		return fmt.Errorf("no user has the email %q", *email)
	}
	if errors.Is(err, apikitusage.ErrInvalidQuery) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	return writeUsage(stdout, *email, resp)
}

// writeUsage prints a usage report: the plan and quota, the totals, each
// key's totals, and each key's points.
func writeUsage(w io.Writer, email string, r apikitusage.Response) error {
	plan := r.Plan
	if plan == "" {
		plan = "none"
	}
	fmt.Fprintf(w, "usage of %s, plan %s\n", email, plan)
	fmt.Fprintf(w, "period   %s to %s\n", r.Period.Start.Format(time.RFC3339), r.Period.End.Format(time.RFC3339))
	if r.Quota != nil {
		fmt.Fprintf(w, "quota    %d used of %d, %d remaining\n", r.Quota.Used, r.Quota.Limit, r.Quota.Remaining)
	} else {
		fmt.Fprintln(w, "quota    none")
	}
	fmt.Fprintf(w, "range    %s to %s by the %s\n\n", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Granularity)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "key\trequests\tok\tclient_error\trate_limited\tserver_error\tcost\t")
	row := func(name string, t apikitusage.Totals) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, t.Requests, t.OK, t.ClientError, t.Limited, t.ServerError, t.Cost)
	}
	row("total", r.Totals)
	for _, k := range r.Keys {
		row(k.KeyID, k.Totals)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range r.Keys {
		fmt.Fprintf(w, "\n%s\n", k.KeyID)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "start\trequests\tok\tclient_error\trate_limited\tserver_error\tcost\t")
		for _, p := range k.Series {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", p.Start.Format(time.RFC3339), p.Requests, p.OK, p.ClientError, p.Limited, p.ServerError, p.Cost)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeRejected lists rejected meter events with Stripe's error.
func writeRejected(w io.Writer, events []meter.Event) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "no rejected meter events")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "identifier\tuser\tcustomer\tevent\thour\tvalue\tattempts\terror")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.Identifier, e.UserID, e.CustomerID, e.EventName,
			e.Slice.Format(time.RFC3339), e.Value, e.Attempts, e.LastError)
	}
	return tw.Flush()
}
