package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
)

// overrideCmd sets or clears the override of a user's budget (or of one
// key's, for plans whose budgets are per key): a negotiated higher limit,
// a larger quota. Running servers read overrides every
// app.DefaultOverrideRefresh.
func overrideCmd(ctx context.Context, cfg app.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("override", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "email address of the user")
	keyID := fs.String("key", "", "id of one of the user's keys: override that key's budget (plans with per-key budgets)")
	limits := fs.String("limits", "", `rate limits that replace the plan's, comma-separated: "50/s,1000/h"`)
	quota := fs.String("quota", "", `quota that replaces the plan's: "N/day", "N/month", "N/period", or "none"`)
	remove := fs.Bool("clear", false, "remove the override")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	switch {
	case *email == "" || fs.NArg() > 0:
		return usageError{"override needs --email and no other arguments"}
	case *remove && (*limits != "" || *quota != ""):
		return usageError{"override --clear takes no --limits or --quota"}
	case !*remove && *limits == "" && *quota == "":
		return usageError{"override needs --limits, --quota or --clear"}
	}
	var o plan.Override
	if *limits != "" {
		for _, s := range strings.Split(*limits, ",") {
			l, err := ratelimit.ParseLimit(strings.TrimSpace(s))
			if err != nil {
				return usageError{fmt.Sprintf("--limits: %v", err)}
			}
			o.Limits = append(o.Limits, l)
		}
	}
	if *quota != "" {
		var q plan.Quota // "none": no quota
		if *quota != "none" {
			var err error
			if q, err = plan.ParseQuota(*quota); err != nil {
				return usageError{fmt.Sprintf("--quota: %v", err)}
			}
		}
		o.Quota = &q
	}
	if !*remove {
		if err := o.Validate(); err != nil {
			return usageError{err.Error()}
		}
	}

	// Running servers reload the overrides when told through the bus
	// (and every OverrideRefresh regardless).
	st, bus, done, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer done()
	userID, found, err := st.UserByEmail(ctx, *email)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no user has the email %q", *email)
	}
	id := plan.Identity{Budget: plan.PerUser, ID: strconv.FormatInt(userID, 10)}
	if *keyID != "" {
		k, err := apikey.NewManager(st, apikey.ManagerOptions{}).Get(ctx, *keyID)
		if errors.Is(err, apikey.ErrNotFound) || (err == nil && k.UserID != userID) {
			return fmt.Errorf("%s has no key with the id %q", *email, *keyID)
		}
		if err != nil {
			return err
		}
		id = plan.Identity{Budget: plan.PerKey, ID: k.ID}
	}
	if *remove {
		found, err := st.DeleteOverride(ctx, id)
		if err != nil {
			return err
		}
		if !found {
			fmt.Fprintf(stdout, "%s (%s) has no override\n", id, *email)
			return nil
		}
		bus.Publish(invalidate.User(userID))
		auditOverride(ctx, cfg, st, userID, id, "cleared", "", stderr)
		fmt.Fprintf(stdout, "cleared the override of %s (%s); running servers apply it within %v\n", id, *email, app.DefaultOverrideRefresh)
		return nil
	}
	if err := st.SetOverride(ctx, id, o, time.Now()); err != nil {
		return err
	}
	bus.Publish(invalidate.User(userID))
	auditOverride(ctx, cfg, st, userID, id, "set", describeOverride(o), stderr)
	fmt.Fprintf(stdout, "%s (%s): %s; running servers apply it within %v\n", id, *email, describeOverride(o), app.DefaultOverrideRefresh)
	return nil
}

// describeOverride writes an override for the operator: "limits 50/s,
// 1000/h; quota 100000/month".
func describeOverride(o plan.Override) string {
	var parts []string
	if o.Limits != nil {
		s := make([]string, len(o.Limits))
		for i, l := range o.Limits {
			s[i] = l.String()
		}
		parts = append(parts, "limits "+strings.Join(s, ", "))
	}
	if o.Quota != nil {
		if o.Quota.IsZero() {
			parts = append(parts, "no quota")
		} else {
			parts = append(parts, "quota "+o.Quota.String())
		}
	}
	return strings.Join(parts, "; ")
}

// auditOverride records an override set or cleared in the security log,
// as a plan change by the operator (the context's actor). A failure is
// reported; the override stands.
func auditOverride(ctx context.Context, cfg app.Config, st *store.Store, userID int64, id plan.Identity, change, desc string, stderr io.Writer) {
	detail := map[string]string{"override": change, "budget": id.String()}
	if desc != "" {
		detail["limits"] = desc
	}
	e := audit.Event{Kind: audit.PlanChanged, UserID: userID, Detail: detail}
	if _, err := app.NewAuditLog(st, cfg.AuditRetention, nil).Append(ctx, e); err != nil {
		fmt.Fprintln(stderr, "favoritesapi: recording the override in the security log:", err)
	}
}
