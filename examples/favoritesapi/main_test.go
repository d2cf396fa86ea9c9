package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/syncbuf"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	for _, v := range []string{"ADDR", "BASE_URL", "DATABASE_URL", "SMTP_URL", "MAIL_FROM", "STRIPE_SECRET_KEY",
		"STRIPE_WEBHOOK_SECRET", "STRIPE_PRICE_ID", "STRIPE_API_URL", "REDIS_URL", "RATE_LIMIT", "KEY_PREFIX",
		"TRUSTED_PROXIES", "METRICS_ADDR", "keys issue", "keys revoke", "migrate",
		"STRIPE_PRO_PRICE_ID", "PLANS_FILE", "favoritesapi plans", "favoritesapi override", "--clear"} {
		if !strings.Contains(stderr.String(), v) {
			t.Errorf("-h does not mention %s:\n%s", v, stderr.String())
		}
	}
}

func TestBadUsage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "f.db")
	plansFile := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"keys"}, map[string]string{"DATABASE_URL": db}, "needs a subcommand"},
		{[]string{"keys", "issue"}, map[string]string{"DATABASE_URL": db}, "needs --email"},
		{[]string{"keys", "revoke"}, map[string]string{"DATABASE_URL": db}, "exactly one key id"},
		{nil, map[string]string{"RATE_LIMIT": "lots"}, "RATE_LIMIT"},
		{nil, map[string]string{"BASE_URL": "ftp://x"}, "BASE_URL"},
		{nil, map[string]string{"STRIPE_SECRET_KEY": "sk_test_x"}, "STRIPE_PRICE_ID is required"},
		{nil, map[string]string{"BASE_URL": "https://api.example.com"}, "dev mode"},
		{nil, map[string]string{"ADDR": "0.0.0.0:8080"}, "dev mode"},
		// Dev mode listens on loopback only, whatever BASE_URL says.
		{nil, map[string]string{"ADDR": "0.0.0.0:8080", "BASE_URL": "http://localhost:8080"}, "loopback address"},
		{nil, map[string]string{"ADDR": ":8080", "BASE_URL": "http://localhost:8080"}, "loopback address"},
		{nil, map[string]string{"ADDR": "[::]:8080", "BASE_URL": "http://localhost:8080"}, "loopback address"},
		{nil, map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "TRUSTED_PROXIES"},
		// Bad plan files fail at start, naming the file, the plan and the field.
		{nil, map[string]string{"PLANS_FILE": filepath.Join(dir, "missing.json")}, "PLANS_FILE"},
		{nil, map[string]string{"PLANS_FILE": plansFile("week.json",
			`{"plans": [{"name": "free", "limits": ["1/s"]}, {"name": "hobby", "prices": ["price_1"], "limits": ["10/s"], "quota": "100/week"}]}`)},
			`plans[1].quota (plan "hobby")`},
		{nil, map[string]string{"PLANS_FILE": plansFile("limit.json", `{"plans": [{"name": "free", "limits": ["lots"]}]}`)}, `plans[0].limits[0] (plan "free")`},
		{nil, map[string]string{"PLANS_FILE": plansFile("budget.json", `{"plans": [{"name": "free", "limits": ["1/s"], "budget": "team"}]}`)}, `plans[0].budget`},
		{nil, map[string]string{"PLANS_FILE": plansFile("unknown.json", `{"plans": [{"name": "free", "limits": ["1/s"], "qouta": "1/day"}]}`)}, `qouta`},
		{nil, map[string]string{"PLANS_FILE": plansFile("twofree.json", `{"plans": [{"name": "free", "limits": ["1/s"]}, {"name": "gratis", "limits": ["2/s"]}]}`)}, `free plan`},
		// RATE_LIMIT replaces each plan's first limit; it may not repeat another.
		{nil, map[string]string{"RATE_LIMIT": "10/s", "PLANS_FILE": plansFile("two.json", `{"plans": [{"name": "free", "limits": ["1/s", "10/s"]}]}`)}, "RATE_LIMIT 10/s"},
		{[]string{"plans", "extra"}, map[string]string{"DATABASE_URL": db}, "plans takes no arguments"},
		{[]string{"override"}, map[string]string{"DATABASE_URL": db}, "needs --email"},
		{[]string{"override", "--email", "a@example.com"}, map[string]string{"DATABASE_URL": db}, "needs --limits, --quota or --clear"},
		{[]string{"override", "--email", "a@example.com", "--limits", "fast"}, map[string]string{"DATABASE_URL": db}, "--limits"},
		{[]string{"override", "--email", "a@example.com", "--quota", "5/week"}, map[string]string{"DATABASE_URL": db}, "--quota"},
		{[]string{"override", "--email", "a@example.com", "--clear", "--quota", "5/day"}, map[string]string{"DATABASE_URL": db}, "--clear takes no"},
		{[]string{"delete-account"}, map[string]string{"DATABASE_URL": db}, "delete-account needs --email"},
		{[]string{"delete-account", "--email", "a@example.com", "extra"}, map[string]string{"DATABASE_URL": db}, "delete-account needs --email"},
		{nil, map[string]string{"ACCOUNT_DELETE_AT_PERIOD_END": "sometimes"}, "ACCOUNT_DELETE_AT_PERIOD_END"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tc.args, env(tc.env), &stdout, &stderr); code != 2 {
			t.Errorf("%v %v exited %d, want 2", tc.args, tc.env, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: stderr %q, want it to say %q", tc.args, stderr.String(), tc.want)
		}
	}
}

func TestMigrateAndKeys(t *testing.T) {
	ctx := t.Context()
	vars := map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "f.db")}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"migrate"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("migrate exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "applied apikit/keys 0001_") || !strings.Contains(stdout.String(), "applied favoritesapi 0001_") {
		t.Errorf("migrate printed %q", stdout.String())
	}
	stdout.Reset()
	if code := run(ctx, []string{"migrate"}, env(vars), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "up to date") {
		t.Errorf("second migrate exited %d: %q", code, stdout.String())
	}

	stderr.Reset()
	if code := run(ctx, []string{"keys", "issue", "--email", "nobody@example.com"}, env(vars), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no user") {
		t.Errorf("issuing to an unknown user exited %d: %s", code, stderr.String())
	}

	st, err := app.Open(ctx, vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.CreateUser(ctx, "ada@example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(ctx, []string{"keys", "issue", "--email", "ADA@example.com", "--name", "support case 17"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("keys issue exited %d: %s", code, stderr.String())
	}
	tok, err := apikey.Parse(strings.TrimSpace(stdout.String()))
	if err != nil || tok.Prefix != "fav_test" {
		t.Fatalf("keys issue printed %q: %v", stdout.String(), err)
	}
	keys := apikey.NewManager(st, apikey.ManagerOptions{})
	if k, err := keys.Get(ctx, tok.ID); err != nil || k.Name != "support case 17" || k.State(time.Now()) != apikey.StateActive {
		t.Fatalf("issued key: %+v, %v", k, err)
	}
	stdout.Reset()
	if code := run(ctx, []string{"keys", "revoke", tok.ID}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("keys revoke exited %d: %s", code, stderr.String())
	}
	if k, _ := keys.Get(ctx, tok.ID); k.State(time.Now()) != apikey.StateRevoked {
		t.Errorf("after keys revoke the key is %s", k.State(time.Now()))
	}
	stderr.Reset()
	if code := run(ctx, []string{"keys", "revoke", "AAAAAAAAAAAA"}, env(vars), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no key") {
		t.Errorf("revoking an unknown key exited %d: %s", code, stderr.String())
	}
}

// TestServeShutsDownGracefully runs the command's serve on a free port,
// makes a request, and stops it as SIGTERM would: it exits 0.
func TestServeShutsDownGracefully(t *testing.T) {
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	vars := map[string]string{"ADDR": addr, "METRICS_ADDR": metricsAddr, "DATABASE_URL": filepath.Join(t.TempDir(), "f.db")}
	ctx, stop := context.WithCancel(t.Context())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env(vars), &stdout, &stderr) }()

	var (
		resp *http.Response
		err  error
	)
	for i := 0; i < 200; i++ {
		if resp, err = http.Get("http://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		stop()
		t.Fatalf("server never answered: %v\n%s", err, stderr.String())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}
	// Metrics are on their own listener, not on the public one.
	if resp, err := http.Get("http://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("public /metrics = %v, %v; want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics on METRICS_ADDR = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	stop() // what SIGINT/SIGTERM do through signal.NotifyContext
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after shutdown:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s")
	}
	for _, want := range []string{"DEV MODE", "FavoritesAPI listening", "stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, stderr.String())
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestPlans prints the plans in force: the built-in ones (with RATE_LIMIT
// as every plan's first limit), or PLANS_FILE's, in the file format, so
// that the output of one run is a PLANS_FILE for the next.
func TestPlans(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"plans"}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("plans exited %d: %s", code, stderr.String())
	}
	builtin := stdout.String()
	for _, want := range []string{
		`"name": "free"`, `"quota": "100/day"`, `"1/s burst 5"`,
		`"name": "hobby"`, `"price_dev_hobby"`, `"quota": "10000/month"`, `"10/s"`,
		`"name": "pro"`, `"price_dev_pro"`, `"100/s"`, `"metered": true`, `"budget": "user"`,
	} {
		if !strings.Contains(builtin, want) {
			t.Errorf("plans does not print %s:\n%s", want, builtin)
		}
	}
	if strings.Count(builtin, `"quota"`) != 2 {
		t.Errorf("plans: want a quota on free and hobby only:\n%s", builtin)
	}

	// With Stripe: the configured prices; no pro plan without its price.
	stripe := map[string]string{"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_PRICE_ID": "price_hobby1", "STRIPE_WEBHOOK_SECRET": "whsec_x",
		"BASE_URL": "https://api.example.com", "ADDR": ":8080"}
	stdout.Reset()
	if code := run(t.Context(), []string{"plans"}, env(stripe), &stdout, &stderr); code != 0 {
		t.Fatalf("plans with Stripe exited %d: %s", code, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, `"price_hobby1"`) || strings.Contains(out, `"pro"`) {
		t.Errorf("plans with STRIPE_PRICE_ID and no STRIPE_PRO_PRICE_ID:\n%s", out)
	}
	stripe["STRIPE_PRO_PRICE_ID"] = "price_pro1"
	stdout.Reset()
	if code := run(t.Context(), []string{"plans"}, env(stripe), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `"price_pro1"`) {
		t.Errorf("plans with STRIPE_PRO_PRICE_ID exited %d:\n%s", code, stdout.String())
	}

	// The output is a plan file: read back, it prints the same.
	path := filepath.Join(t.TempDir(), "plans.json")
	if err := os.WriteFile(path, []byte(builtin), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(t.Context(), []string{"plans"}, env(map[string]string{"PLANS_FILE": path}), &stdout, &stderr); code != 0 || stdout.String() != builtin {
		t.Errorf("plans with PLANS_FILE of its own output exited %d:\n%s\nwant:\n%s", code, stdout.String(), builtin)
	}

	// RATE_LIMIT replaces the first limit of every plan.
	stdout.Reset()
	if code := run(t.Context(), []string{"plans"}, env(map[string]string{"PLANS_FILE": path, "RATE_LIMIT": "50/15m"}), &stdout, &stderr); code != 0 {
		t.Fatalf("plans with RATE_LIMIT exited %d: %s", code, stderr.String())
	}
	if out := stdout.String(); strings.Count(out, `"50/15min"`) != 3 || strings.Contains(out, `"10/s"`) {
		t.Errorf("plans with RATE_LIMIT=50/15m:\n%s", out)
	}
}

// TestOverride sets a user's limits and quota with the override command
// while a server runs on the same database: the server applies it within
// its refresh interval, and --clear gives the plan back.
func TestOverride(t *testing.T) {
	ctx := t.Context()
	vars, srv, hs := serveForCommands(t, app.Options{OverrideRefresh: 50 * time.Millisecond})
	token, err := srv.Provision(ctx, "ada@example.com", "k") // pro: 100/s, no quota
	if err != nil {
		t.Fatal(err)
	}
	other, err := srv.Provision(ctx, "bob@example.com", "k")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := apikey.Parse(other)
	waitMe := func(why, limits, quota string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			req, _ := http.NewRequest("GET", hs.URL+"/v1/me", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var me struct {
				Plan struct {
					Name   string
					Limits []struct{ Name string }
					Quota  *struct{ Name string }
				}
			}
			json.NewDecoder(resp.Body).Decode(&me)
			resp.Body.Close()
			var got []string
			for _, l := range me.Plan.Limits {
				got = append(got, l.Name)
			}
			gotQuota := ""
			if me.Plan.Quota != nil {
				gotQuota = me.Plan.Quota.Name
			}
			if strings.Join(got, ",") == limits && gotQuota == quota && me.Plan.Name == "pro" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /v1/me plan %+v, want limits %s and quota %q", why, me.Plan, limits, quota)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMe("before any override", "100/s", "")

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"override", "--email", "ADA@example.com", "--limits", "5/s, 100/h", "--quota", "1000/day"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("override exited %d: %s", code, stderr.String())
	}
	if want := "user:1 (ADA@example.com): limits 5/s, 100/h; quota 1000/day;"; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("override printed %q, want it to start %q", stdout.String(), want)
	}
	waitMe("after the override", "5/s,100/h", "1000/day")

	// A key must be the user's own.
	stderr.Reset()
	if code := run(ctx, []string{"override", "--email", "ada@example.com", "--key", otherKey.ID, "--limits", "1/s"}, env(vars), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "has no key") {
		t.Errorf("override of another user's key exited %d: %s", code, stderr.String())
	}
	// A per-key override is stored apart from the user's (the built-in
	// plans' budgets are per user, so it does not apply to them).
	own, _ := apikey.Parse(token)
	stdout.Reset()
	if code := run(ctx, []string{"override", "--email", "ada@example.com", "--key", own.ID, "--quota", "none"}, env(vars), &stdout, &stderr); code != 0 ||
		!strings.HasPrefix(stdout.String(), "key:"+own.ID+" (ada@example.com): no quota") {
		t.Errorf("override of a key exited %d: %q %s", code, stdout.String(), stderr.String())
	}

	stdout.Reset()
	if code := run(ctx, []string{"override", "--email", "ada@example.com", "--clear"}, env(vars), &stdout, &stderr); code != 0 ||
		!strings.HasPrefix(stdout.String(), "cleared the override of user:1") {
		t.Fatalf("override --clear exited %d: %q %s", code, stdout.String(), stderr.String())
	}
	waitMe("after clearing the override", "100/s", "")
	stdout.Reset()
	if code := run(ctx, []string{"override", "--email", "ada@example.com", "--clear"}, env(vars), &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "has no override") {
		t.Errorf("clearing again exited %d: %q", code, stdout.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"override", "--email", "nobody@example.com", "--quota", "5/day"}, env(vars), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no user") {
		t.Errorf("override for an unknown user exited %d: %s", code, stderr.String())
	}
}

// TestUnaffordablePlan: a plan whose limit can never admit a write (its
// burst is below the write's cost) is refused at start, naming it.
func TestUnaffordablePlan(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plans.json")
	if err := os.WriteFile(file, []byte(`{"plans":[{"name":"free","prices":[],"limits":["1/s"],"quota":"100/day","budget":"user"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"plans"}, env(map[string]string{"PLANS_FILE": file, "DATABASE_URL": filepath.Join(dir, "f.db")}), &stdout, &stderr); code != 2 {
		t.Errorf("favoritesapi plans with an unaffordable plan exited %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `plan "free": limit 1/s admits at most 1 at once`) || !strings.Contains(stderr.String(), `"1/s burst 5"`) {
		t.Errorf("stderr %q; want it to name the plan, the limit and the fix", stderr.String())
	}
}

// TestDeleteAccountCommand: the operator's delete-account cancels the
// subscription (at once, or at period end with --at-period-end), deletes
// the user with their keys and favorites, keeps the subscription as an
// unlinked record, and writes an audit line without the address.
func TestDeleteAccountCommand(t *testing.T) {
	ctx := t.Context()
	vars, srv, hs := serveForCommands(t, app.Options{KeyCacheTTL: 50 * time.Millisecond})
	api := func(token, method, path, body string) int {
		resp := callAPI(t, hs.URL, token, method, path, body)
		resp.Body.Close()
		return resp.StatusCode
	}
	db := srv.Store().DB()
	count := func(q string, args ...any) int {
		var n int
		if err := db.GetContext(ctx, &n, db.Rebind(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	ada, err := srv.Provision(ctx, "ada@example.com", "k")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := srv.Provision(ctx, "bob@example.com", "k")
	if err != nil {
		t.Fatal(err)
	}
	if got := api(ada, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev"}`); got != http.StatusCreated {
		t.Fatalf("saving a favorite = %d", got)
	}
	api(bob, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev"}`)

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"delete-account", "--email", "nobody@example.com"}, env(vars), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no user") {
		t.Fatalf("delete-account for an unknown address = %d, stderr %s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(ctx, []string{"delete-account", "--email", "ADA@example.com"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("delete-account = %d, stderr %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "canceled at once") {
		t.Errorf("stdout = %q", stdout.String())
	}
	audit := ""
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "msg=audit") {
			audit = l
		}
	}
	if !strings.Contains(audit, `event="account deleted"`) || !strings.Contains(audit, "by=operator") || strings.Contains(stderr.String(), "ada@") {
		t.Errorf("audit line %q (stderr %s)", audit, stderr.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for api(ada, "GET", "/v1/me", "") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the deleted account's key still works")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := api(bob, "GET", "/v1/me", ""); got != http.StatusOK {
		t.Errorf("another account's key = %d after the deletion", got)
	}
	if n := count(`SELECT COUNT(*) FROM users WHERE email = ?`, "ada@example.com"); n != 0 {
		t.Errorf("%d users still have the address", n)
	}
	if n := count(`SELECT COUNT(*) FROM favorites`); n != 1 {
		t.Errorf("%d favorites left, want bob's 1", n)
	}
	if n := count(`SELECT COUNT(*) FROM billing_subscriptions WHERE status = 'canceled'`); n != 1 {
		t.Errorf("%d canceled subscriptions, want ada's, kept as a record", n)
	}
	if n := count(`SELECT COUNT(*) FROM billing_customers`); n != 1 {
		t.Errorf("%d billing customers, want bob's only", n)
	}

	// At period end: the subscription stays active until then, marked.
	stdout.Reset()
	stderr.Reset()
	if code := run(ctx, []string{"delete-account", "--email", "bob@example.com", "--at-period-end"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("delete-account --at-period-end = %d, stderr %s", code, stderr.String())
	}
	if n := count(`SELECT COUNT(*) FROM billing_subscriptions WHERE status = 'active' AND cancel_at_period_end`); n != 1 {
		t.Errorf("%d subscriptions set to cancel at period end, want bob's", n)
	}
	if n := count(`SELECT COUNT(*) FROM favorites`) + count(`SELECT COUNT(*) FROM users`) + count(`SELECT COUNT(*) FROM api_keys`); n != 0 {
		t.Errorf("%d favorites, users and keys left", n)
	}
}

// serveForCommands serves FavoritesAPI on a fresh SQLite file, for tests
// that run the operator's commands against the database of a live server:
// it returns the environment that names the file, the server and its HTTP
// front. Both close when the test ends.
func serveForCommands(t *testing.T, opts app.Options) (map[string]string, *app.Server, *httptest.Server) {
	t.Helper()
	vars := map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "f.db")}
	cfg, err := app.ConfigFromEnv(env(vars))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	opts.Logger, opts.Stderr = slog.New(slog.NewTextHandler(logs, nil)), logs
	srv, err := app.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close(context.Background())
	})
	return vars, srv, hs
}

// TestUsageCommand: "favoritesapi usage" prints the numbers GET /v1/usage
// answers the account's keys, in total and per key; it lists rejected
// meter events; and it refuses what it cannot answer.
func TestUsageCommand(t *testing.T) {
	ctx := t.Context()
	vars, srv, hs := serveForCommands(t, app.Options{UsageFlushInterval: 50 * time.Millisecond})
	token, err := srv.Provision(ctx, "ada@example.com", "k")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := apikey.Parse(token)
	apiCall := func(method, path, body string) *http.Response {
		t.Helper()
		return callAPI(t, hs.URL, token, method, path, body)
	}
	for range 3 {
		apiCall("GET", "/v1/favorites", "").Body.Close()
	}
	apiCall("POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev/"}`).Body.Close()
	apiCall("GET", "/v1/favorites/0123456789abcdef", "").Body.Close()
	if err := srv.Metering().Flush(ctx); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"usage", "--email", "ADA@example.com"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("usage exited %d: %s", code, stderr.String())
	}
	// The API's answer, which does not count the request asking.
	resp := apiCall("GET", "/v1/usage", "")
	var api struct {
		Plan   string
		Totals map[string]int64
		Keys   []struct {
			KeyID  string `json:"key_id"`
			Totals map[string]int64
		}
	}
	json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	row := func(name string, t map[string]int64) string {
		return strings.Join([]string{name, fmt.Sprint(t["requests"]), fmt.Sprint(t["ok"]), fmt.Sprint(t["client_error"]),
			fmt.Sprint(t["rate_limited"]), fmt.Sprint(t["server_error"]), fmt.Sprint(t["cost"])}, " ")
	}
	out := stdout.String()
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 7 {
			if _, seen := fields[f[0]]; !seen {
				fields[f[0]] = strings.Join(f, " ")
			}
		}
	}
	if api.Plan != "pro" || len(api.Keys) != 1 || api.Keys[0].KeyID != tok.ID || api.Totals["requests"] != 5 || api.Totals["cost"] != 3+5+1 {
		t.Fatalf("GET /v1/usage: %+v, want pro with one key, 5 requests costing 9", api)
	}
	if got, want := fields["total"], row("total", api.Totals); got != want {
		t.Errorf("usage prints total %q, GET /v1/usage says %q:\n%s", got, want, out)
	}
	if got, want := fields[tok.ID], row(tok.ID, api.Keys[0].Totals); got != want {
		t.Errorf("usage prints key %q, GET /v1/usage says %q:\n%s", got, want, out)
	}
	if !strings.Contains(out, "plan pro") || !strings.Contains(out, "quota    none") {
		t.Errorf("usage output lacks the plan and quota:\n%s", out)
	}

	stdout.Reset()
	if code := run(ctx, []string{"usage", "--email", "ada@example.com", "--granularity", "hour", "--from", time.Now().UTC().Format(time.DateOnly)}, env(vars), &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "by the hour") || !strings.Contains(stdout.String(), time.Now().UTC().Format("2006-01-02T15:00:00Z")) {
		t.Errorf("usage by the hour exited %d:\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(ctx, []string{"usage", "--rejected"}, env(vars), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "no rejected meter events") {
		t.Errorf("usage --rejected exited %d: %s%s", code, stdout.String(), stderr.String())
	}
	for _, bad := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"usage"}, 2, "needs --email"},
		{[]string{"usage", "--email", "ada@example.com", "--granularity", "minute"}, 2, "granularity"},
		{[]string{"usage", "--email", "nobody@example.com"}, 1, "no user"},
		{[]string{"usage", "--requeue", "mev_nothing"}, 1, "no meter event"},
	} {
		stderr.Reset()
		if code := run(ctx, bad.args, env(vars), &stdout, &stderr); code != bad.code || !strings.Contains(stderr.String(), bad.says) {
			t.Errorf("%v exited %d, want %d saying %q: %s", bad.args, code, bad.code, bad.says, stderr.String())
		}
	}
}

// callAPI sends an API request with token to the server at base.
func callAPI(t *testing.T, base, token, method, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
