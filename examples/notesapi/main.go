package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/ratelimit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "notesapi:", err)
		os.Exit(1)
	}
}

// keyPrefix is the prefix of the keys notesapi issues and accepts.
const keyPrefix = "notes"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: notesapi serve | notesapi key --email E [--scopes notes:read,notes:write]")
	}
	st, err := open(ctx, cmp.Or(getenv("DATABASE_URL"), "notes.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "key":
		fs := flag.NewFlagSet("key", flag.ContinueOnError)
		fs.SetOutput(stderr)
		email := fs.String("email", "", "the key's owner (created if new)")
		scopes := fs.String("scopes", "notes:read,notes:write", "comma-separated scopes")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *email == "" {
			return errors.New("key needs --email")
		}
		uid, _, err := st.CreateUser(ctx, *email, time.Now())
		if err != nil {
			return err
		}
		_, tok, err := apikey.NewManager(st, apikey.ManagerOptions{Prefix: keyPrefix}).
			Issue(ctx, uid, apikey.IssueOptions{Name: "notesapi key", Scopes: strings.Split(*scopes, ",")})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok.Reveal())
		return nil
	case "serve":
		v := apikey.NewVerifier(st, apikey.VerifierOptions{Prefixes: []string{keyPrefix}, Logger: log})
		defer v.Close()
		a := &app{st: st, verifier: v, limiter: ratelimit.NewMemory(ratelimit.MemoryOptions{}), log: log}
		hs := &http.Server{Addr: cmp.Or(getenv("ADDR"), "localhost:8081"), Handler: a.routes(ratelimit.PerMinute(60)),
			ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		}()
		log.Info("notesapi listening", "addr", hs.Addr)
		if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return v.Flush(context.Background())
	}
	return fmt.Errorf("unknown command %q", args[0])
}
