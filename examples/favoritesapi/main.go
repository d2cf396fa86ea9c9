// Command favoritesapi serves FavoritesAPI, a complete API business built
// from apikit: a landing page with sign-up through Stripe Checkout, a
// dashboard for API keys behind passwordless sign-in, and a rate-limited
// JSON API for saving favorite links.
//
//	go run ./examples/favoritesapi            # serve on localhost:8080 with SQLite
//	go run ./examples/favoritesapi migrate    # apply migrations and exit
//	go run ./examples/favoritesapi keys issue --email ada@example.com --name support
//	go run ./examples/favoritesapi keys revoke 4tQ2x9LmZpB7
//	go run ./examples/favoritesapi plans      # print the plans in force
//	go run ./examples/favoritesapi override --email ada@example.com --limits 50/s --quota 100000/month
//	go run ./examples/favoritesapi delete-account --email ada@example.com
//	go run ./examples/favoritesapi usage --email ada@example.com --from 2026-03-01 --to 2026-03-08
//	go run ./examples/favoritesapi usage --rejected
//	go run ./examples/favoritesapi audit --email ada@example.com > events.jsonl
//
// It is configured by environment variables; run it with -h for the list.
// Without STRIPE_SECRET_KEY, billing runs in a dev mode that takes no
// payment, and without SMTP_URL the login emails are printed to stderr.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/store"
)

// Shutdown bounds: in-flight requests get drainTimeout to finish, then
// batched writes and the mail queue get flushTimeout.
const (
	drainTimeout = 20 * time.Second
	flushTimeout = 10 * time.Second
)

const usage = `Usage:
  favoritesapi [serve]                               serve the site and the API
  favoritesapi migrate                               apply database migrations and exit
  favoritesapi keys issue --email E [--name N] [--expires-in DAYS] [--tags T,…]
                    [--networks CIDR,…] [--metadata JSON]
                                                     issue an API key to an existing user
  favoritesapi keys revoke ID                        revoke an API key
  favoritesapi plans                                 print the plans in force (the PLANS_FILE format)
  favoritesapi override --email E [--key ID] [--limits L,…] [--quota N/PERIOD]
                                                     replace a plan's limits or quota for a user
                                                     (or one key, on a per-key plan)
  favoritesapi override --email E [--key ID] --clear remove that override
  favoritesapi delete-account --email E [--at-period-end]
                                                     delete an account: cancel its subscription
                                                     (at once, or at the end of the period paid
                                                     for), revoke its keys, end its sessions,
                                                     delete its address and favorites
  favoritesapi usage --email E [--from D] [--to D] [--granularity hour|day] [--key ID]
                                                     print an account's usage as GET /v1/usage
                                                     reports it: totals, then per key (default:
                                                     the current period, by the day)
  favoritesapi usage --rejected [--limit N]          list the meter events Stripe rejected
  favoritesapi usage --requeue IDENTIFIER            send a rejected meter event again
  favoritesapi audit [--email E]                     write the security log (of one account) to
                                                     stdout as JSON lines, oldest first

Operator commands are recorded in the security log as actions of the
operator named by $USER (or $APIKIT_OPERATOR).

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the command, with its environment passed in so that tests can
// run it in-process. It returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("favoritesapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, app.EnvHelp) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := app.ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "favoritesapi:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cmd, rest := "serve", fs.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd != "serve" {
		// What an operator command changes is theirs in the security log.
		ctx = audit.WithActor(ctx, operator(getenv))
	}
	switch cmd {
	case "serve":
		err = serve(ctx, cfg, getenv, logger, stderr)
	case "migrate":
		err = migrateCmd(ctx, cfg, stdout)
	case "keys":
		err = keysCmd(ctx, cfg, rest, stdout, stderr)
	case "plans":
		if len(rest) > 0 {
			err = usageError{"plans takes no arguments"}
			break
		}
		_, err = cfg.Plans.WriteTo(stdout)
	case "override":
		err = overrideCmd(ctx, cfg, rest, stdout, stderr)
	case "delete-account":
		err = deleteAccountCmd(ctx, cfg, logger, rest, stdout, stderr)
	case "usage":
		err = usageCmd(ctx, cfg, logger, rest, stdout, stderr)
	case "audit":
		err = auditCmd(ctx, cfg, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "favoritesapi: unknown command %q\n\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "favoritesapi: %v\n\n%s", err, usage)
			return 2
		}
		fmt.Fprintln(stderr, "favoritesapi:", err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// serve runs the server until ctx is done, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish (bounded), then
// flushes batched writes and the mail queue.
func serve(ctx context.Context, cfg app.Config, getenv func(string) string, logger *slog.Logger, stderr io.Writer) error {
	opts := app.Options{Logger: logger, Stderr: stderr}
	tp, err := tracerProviderFromEnv(ctx, getenv)
	if err != nil {
		return err
	}
	if tp != nil {
		opts.TracerProvider = tp
		logger.Info("tracing with OpenTelemetry")
		defer func() {
			// The last batch of spans, after the server has stopped.
			sctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				logger.Warn("sending the last spans", "error", err)
			}
		}()
	}
	srv, err := app.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Close(context.Background())
		return err
	}
	logger.Info("FavoritesAPI listening", "url", cfg.BaseURL, "addr", ln.Addr().String(), "dev_billing", cfg.DevBilling())
	serveErr := make(chan error, 2)
	go func() { serveErr <- hs.Serve(ln) }()
	if cfg.MetricsAddr != "off" {
		// Metrics have a listener of their own, so that no proxy in front
		// of the public one can expose them.
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			hs.Close()
			srv.Close(context.Background())
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		ms := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		defer ms.Close()
		logger.Info("metrics listening", "addr", mln.Addr().String())
		go func() {
			if err := ms.Serve(mln); err != http.ErrServerClosed {
				serveErr <- err
			}
		}()
	}

	select {
	case err := <-serveErr:
		srv.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining requests")
	drainCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	shutdownErr := hs.Shutdown(drainCtx)
	if shutdownErr != nil {
		logger.Error("requests still running at the drain deadline", "error", shutdownErr)
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := srv.Close(flushCtx); err != nil {
		logger.Error("flushing on shutdown", "error", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

func migrateCmd(ctx context.Context, cfg app.Config, stdout io.Writer) error {
	st, err := app.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := app.Migrate(ctx, st)
	for _, m := range applied {
		fmt.Fprintln(stdout, "applied", m.Scope, m.Name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "the database is up to date")
	}
	return nil
}

// openMigrated opens the database for an operator command and applies
// the migrations it may lack.
func openMigrated(ctx context.Context, cfg app.Config) (*store.Store, error) {
	st, err := app.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if _, err := app.Migrate(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// newService starts the whole service for an operator command; done
// closes it, flushing for up to flushTimeout.
func newService(ctx context.Context, cfg app.Config, opts app.Options) (srv *app.Server, done func(), err error) {
	srv, err = app.New(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	return srv, func() {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		srv.Close(ctx)
	}, nil
}

// openForCommand opens and migrates the database for an operator command,
// with the invalidation bus its changes are published on. done sends what
// the command published (for up to flushTimeout) and closes both.
func openForCommand(ctx context.Context, cfg app.Config, stderr io.Writer) (*store.Store, invalidate.Bus, func(), error) {
	st, err := openMigrated(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	bus, err := app.OpenBus(ctx, cfg, st, slog.New(slog.NewTextHandler(stderr, nil)), "")
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return st, bus, func() {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		bus.Close(ctx)
		st.Close()
	}, nil
}

func keysCmd(ctx context.Context, cfg app.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys needs a subcommand: issue or revoke"}
	}
	// Running servers hear of a revocation through the invalidation bus.
	st, bus, done, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer done()
	keys := apikey.NewManager(st, apikey.ManagerOptions{
		Prefix:   cfg.KeyEnvPrefix(),
		OnChange: func(id string) { bus.Publish(invalidate.Key(id)) },
		Audit:    app.KeyAudit(app.NewAuditLog(st, cfg.AuditRetention, nil)),
	})
	switch args[0] {
	case "issue":
		fs := flag.NewFlagSet("keys issue", flag.ContinueOnError)
		fs.SetOutput(stderr)
		email := fs.String("email", "", "email address of an existing user")
		name := fs.String("name", "issued by support", "name of the key")
		expiresIn := fs.Int("expires-in", 0, "days until the key expires (0: never)")
		tags := fs.String("tags", "", "tags of the key, separated by commas")
		networks := fs.String("networks", "", "networks the key may be used from (CIDRs or addresses, separated by commas; default every network)")
		metadata := fs.String("metadata", "", `a JSON object returned with the key by GET /v1/me, such as {"customer":"acme"}`)
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err.Error()}
		}
		if *email == "" || fs.NArg() > 0 {
			return usageError{"keys issue needs --email and no other arguments"}
		}
		if *expiresIn < 0 {
			return usageError{"--expires-in is a number of days, 0 for never"}
		}
		opts := apikey.IssueOptions{Name: *name, ExpiresIn: time.Duration(*expiresIn) * 24 * time.Hour}
		if *tags != "" {
			opts.Tags = strings.Split(*tags, ",")
		}
		if opts.AllowedCIDRs, err = apikey.ParseCIDRs(*networks); err != nil {
			return usageError{"--networks: " + err.Error()}
		}
		if *metadata != "" {
			opts.Metadata = json.RawMessage(*metadata)
		}
		userID, found, err := st.UserByEmail(ctx, *email)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no user has the email %q", *email)
		}
		k, tok, err := keys.Issue(ctx, userID, opts)
		if err != nil {
			return err
		}
		expires := "never expires"
		if !k.ExpiresAt.IsZero() {
			expires = "expires " + k.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "issued key %s (%q, %s) to %s; the token is shown once:\n", k.ID, k.Name, expires, *email)
		fmt.Fprintln(stdout, tok.Reveal())
		return nil
	case "revoke":
		if len(args) != 2 {
			return usageError{"keys revoke needs exactly one key id"}
		}
		if err := keys.Revoke(ctx, args[1]); err != nil {
			if errors.Is(err, apikey.ErrNotFound) {
				return fmt.Errorf("no key has the id %q", args[1])
			}
			if !errors.Is(err, apikey.ErrRevoked) {
				return err
			}
		}
		if cfg.Invalidation == "none" {
			fmt.Fprintf(stdout, "revoked %s (running servers refuse it within their key cache TTL)\n", args[1])
		} else {
			fmt.Fprintf(stdout, "revoked %s (running servers are told at once)\n", args[1])
		}
		return nil
	}
	return usageError{fmt.Sprintf("unknown keys subcommand %q", args[0])}
}

// deleteAccountCmd deletes an account for an operator, as the account
// page does for its user: through the whole service, so that Stripe is
// told and running servers hear of the revoked keys.
func deleteAccountCmd(ctx context.Context, cfg app.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("delete-account", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "email address of the account")
	atEnd := fs.Bool("at-period-end", cfg.AccountDeleteAtPeriodEnd, "let the subscription run to the end of the period paid for")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *email == "" || fs.NArg() > 0 {
		return usageError{"delete-account needs --email and no other arguments"}
	}
	srv, done, err := newService(ctx, cfg, app.Options{Logger: logger, Stderr: stderr})
	if err != nil {
		return err
	}
	defer done()
	id, err := srv.DeleteAccountByEmail(ctx, *email, app.DeleteAccountOptions{AtPeriodEnd: *atEnd, By: "operator"})
	if errors.Is(err, app.ErrNoSuchAccount) {
		return fmt.Errorf("no user has the email %q", *email)
	}
	if err != nil {
		return err
	}
	when := "canceled at once"
	if *atEnd {
		when = "set to cancel at the end of its period"
	}
	fmt.Fprintf(stdout, "deleted account %d (subscription %s)\n", id, when)
	return nil
}

// operator names who runs an operator command, for the security log:
// $APIKIT_OPERATOR, else $USER, else "cli".
func operator(getenv func(string) string) audit.Actor {
	id := cmp.Or(getenv("APIKIT_OPERATOR"), getenv("USER"), "cli")
	if len(id) > 64 {
		id = id[:64]
	}
	return audit.Actor{Kind: audit.ActorOperator, ID: id}
}

// auditCmd writes the security log as JSON lines, oldest first: every
// event, or those of one account.
func auditCmd(ctx context.Context, cfg app.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "only the events of this account")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{"audit takes only --email"}
	}
	st, err := openMigrated(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	var userID int64
	if *email != "" {
		id, found, err := st.UserByEmail(ctx, *email)
		if err != nil {
			return err
		}
		if !found {
			// A deleted account's events remain under its id; its address
			// is gone.
			return fmt.Errorf("no user has the email %q (the events of a deleted account are in the full export, under its id)", *email)
		}
		userID = id
	}
	return app.NewAuditLog(st, cfg.AuditRetention, nil).Export(ctx, stdout, userID)
}
