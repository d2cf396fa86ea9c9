package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/smtptest"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/usage"
	"github.com/chromedp/chromedp"
)

// TestBrowserJourney walks a customer's whole journey in headless Chromium
// against the server running in-process: sign up on the landing page,
// complete the dev checkout, create a key and read it from #new-key, call
// the API with it, upgrade the plan on the dashboard, sign out, sign back in through the link emailed over
// real SMTP, revoke the key and see the API refuse it; then sign in by the
// emailed code (refused in a second browser context that did not ask,
// accepted in the one that did), see the session on the account page,
// change the address by the link sent to the new one (the old one is told,
// every session ends, the key keeps working), sign in with the new
// address, delete the account and see the API refuse its key and the
// address open only a new, empty account. Each page is saved
// as a screenshot in the test's temporary directory (or in
// $APIKIT_SCREENSHOTS, to keep them), and any browser
// console error fails the test.
var codeRe = regexp.MustCompile(`\b[0-9]{8}\b`)

func TestBrowserJourney(t *testing.T) {
	chromium := testenv.Program(t, "chromium")
	smtp := smtptest.Start(t)
	s := startServer(t, sqliteDB, app.Config{SMTPURL: smtp.URL()}, fastUsage)
	shots := t.TempDir()
	if dir := os.Getenv("APIKIT_SCREENSHOTS"); dir != "" { // keep them to look at
		shots = dir
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	// Start the browser, then collect every console message from here on.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s at %s: %s", m.Type, m.URL, m.Text))
				mu.Unlock()
			}
		}
	}()

	step := 0
	// doIn runs the actions in a browser context, then saves a screenshot.
	doIn := func(in context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(in, 30*time.Second) // a hang fails at its step
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// Screenshot only a page that has finished loading.
		if _, err := chromedp.Run(sctx, chromedp.Poll[bool]("document.readyState === 'complete'")); err != nil {
			t.Fatalf("%s: waiting for the page to load: %v", what, err)
		}
		step++
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot after %s: %v", what, err)
		}
		name := filepath.Join(shots, fmt.Sprintf("%02d-%s.png", step, strings.ReplaceAll(what, " ", "-")))
		if err := os.WriteFile(name, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		doIn(bctx, what, actions...)
	}
	textIn := func(in context.Context, sel string) string {
		t.Helper()
		v, err := chromedp.Run(in, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	text := func(sel string) string {
		t.Helper()
		return textIn(bctx, sel)
	}
	location := func() string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	const email = "browser@example.com"
	do("landing",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#signup")))
	do("dev checkout",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS("#signup")),
		chromedp.WaitVisible(chromedp.CSS(`form[action*="dev-checkout"] button`)))
	if body := text("body"); !strings.Contains(strings.ToLower(body), "no payment") {
		t.Errorf("the dev checkout page does not say no payment is taken:\n%s", body)
	}
	do("link sent",
		chromedp.Click(chromedp.CSS(`form[action*="dev-checkout"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#sent-title")))
	if body := text("body"); !strings.Contains(body, "We sent a sign-in link to b•••@example.com") {
		t.Errorf("after checkout the page does not say where the link went:\n%s", body)
	}
	// Paying proves nothing about the address: the emailed link does.
	do("confirm first sign-in",
		chromedp.Navigate(smtp.WaitLink(t, email)),
		chromedp.WaitVisible(chromedp.CSS(`form[action*="/login/verify"] button`)))
	do("dashboard",
		chromedp.Click(chromedp.CSS(`form[action*="/login/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#create-key")))
	if got := location(); got != s.URL+"/app" {
		t.Errorf("after checkout the browser is at %s, want /app", got)
	}
	if got := text("#plan-status"); got != "active" {
		t.Errorf("plan status %q, want active", got)
	}

	do("new key",
		chromedp.SendKeys(chromedp.CSS("#key-name"), "browser key"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	token := text("#new-key")
	tok, err := apikey.Parse(token)
	if err != nil {
		t.Fatalf("#new-key holds %q: %v", token, err)
	}
	if r := call(t, s.URL, token, "GET", "/v1/me", ""); r.status != 200 || !strings.Contains(string(r.body), email) {
		t.Fatalf("API with the new key: %d %s", r.status, r.body)
	}
	// The usage charts: 29 days of history written to the usage tables,
	// then today's calls through the API (some refused by the 10/s
	// limit, some 404s), read back by the dashboard as SVG.
	seedUsage(t, s, email, tok.ID)
	for i := range 25 {
		switch {
		case i%10 == 3:
			call(t, s.URL, token, "POST", "/v1/favorites", fmt.Sprintf(`{"name":"link %d","url":"https://example.com/%d"}`, i, i))
		case i%10 == 7:
			call(t, s.URL, token, "GET", "/v1/favorites/0123456789abcdef", "")
		default:
			call(t, s.URL, token, "GET", "/v1/favorites", "")
		}
	}
	if err := s.Metering().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	do("usage charts",
		chromedp.Navigate(s.URL+"/app#usage"),
		chromedp.WaitVisible(chromedp.CSS("#chart-total svg")))
	bars, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-total svg rect[class^="bar-"]').length`))
	if err != nil || bars < 30 {
		t.Errorf("the total chart has %d bar segments (%v), want one or more for each of the 30 days", bars, err)
	}
	if got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#chart-total svg.usage-chart > title').textContent`)); err != nil ||
		!strings.HasPrefix(got, "Requests per day, last 30 days") {
		t.Errorf("the total chart's <title> is %q (%v)", got, err)
	}
	if got := text("#chart-key-" + tok.ID + " figcaption"); !strings.Contains(got, "browser key") {
		t.Errorf("the key's chart is captioned %q", got)
	}
	// On a phone: the charts scale to the width, their text stays legible.
	do("usage charts on a phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(s.URL+"/app#usage"),
		chromedp.WaitVisible(chromedp.CSS("#chart-total svg")))
	if w, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.querySelector('#chart-total svg.usage-chart').getBoundingClientRect().width`)); err != nil || w > 390 || w < 300 {
		t.Errorf("on a 390 px wide phone the chart is %v px wide (%v), want it to fit", w, err)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateReset()); err != nil {
		t.Fatal(err)
	}

	// The landing page's default plan, shown with its quota; upgrade to
	// pro on the dashboard, served on the next API request.
	if got := text("#plan-name"); got != "hobby" {
		t.Errorf("plan %q, want hobby", got)
	}
	do("upgraded",
		chromedp.Click(chromedp.CSS("#switch-pro")),
		chromedp.WaitNotPresent(chromedp.CSS("#switch-pro")),
		chromedp.WaitVisible(chromedp.CSS("#switch-hobby")))
	if got := text("#plan-name"); got != "pro" {
		t.Errorf("plan after upgrading %q, want pro", got)
	}
	if r := call(t, s.URL, token, "GET", "/v1/me", ""); r.status != 200 || !strings.Contains(string(r.body), `"name":"pro"`) {
		t.Errorf("API after upgrading: %d %s, want the pro plan", r.status, r.body)
	}

	// A key that expires in 90 days, with tags: the list shows both, and
	// the security activity what happened so far.
	do("key with expiry and tags",
		chromedp.SetValue(chromedp.CSS("#key-expires"), "90"),
		chromedp.Click(chromedp.CSS(".newkey-form summary")),
		chromedp.WaitVisible(chromedp.CSS("#key-tags")),
		chromedp.SendKeys(chromedp.CSS("#key-tags"), "ci team:web"),
		chromedp.SendKeys(chromedp.CSS("#key-name"), "expiring key"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	expiring, err := apikey.Parse(text("#new-key"))
	if err != nil {
		t.Fatalf("#new-key: %v", err)
	}
	row := text("#key-" + expiring.ID)
	for _, want := range []string{"expiring key", "ci", "team:web", "test", time.Now().UTC().AddDate(0, 0, 90).Format("2006-01-02")} {
		if !strings.Contains(row, want) {
			t.Errorf("the key's row lacks %q: %s", want, row)
		}
	}
	activity := text("#security-activity")
	for _, want := range []string{"Security activity", "key.issued", "session.signed_in", "billing.plan_changed", "127.0.0.1"} {
		if !strings.Contains(activity, want) {
			t.Errorf("the security activity lacks %q:\n%s", want, activity)
		}
	}

	do("signed out",
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#signup")))
	do("app redirects to login",
		chromedp.Navigate(s.URL+"/app"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)))
	if got := location(); !strings.HasPrefix(got, s.URL+"/login") {
		t.Errorf("/app signed out went to %s, want /login", got)
	}
	do("check your email",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`input[name="email"]`)))

	link := smtp.WaitLink(t, email)
	do("confirm sign-in",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`form[action*="/login/verify"] button`)))
	do("signed in again",
		chromedp.Click(chromedp.CSS(`form[action*="/login/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#key-"+tok.ID)))

	do("revoked",
		chromedp.Click(chromedp.CSS("#key-"+tok.ID+" button.revoke")),
		// The old page has #create-key too: wait for the button to go.
		chromedp.WaitNotPresent(chromedp.CSS("#key-"+tok.ID+" button.revoke")),
		chromedp.WaitVisible(chromedp.CSS("#create-key")))
	if got := text("#key-" + tok.ID + " .state"); got != apikey.StateRevoked {
		t.Errorf("the revoked key's state shows %q", got)
	}
	if r := call(t, s.URL, token, "GET", "/v1/me", ""); r.status != 401 {
		t.Errorf("API with the revoked key: %d, want 401", r.status)
	}

	// Sign in by the code beside the link: it works only in the browser
	// that asked. A second browser context (its own cookies) gets a code
	// page by asking for another address, and is refused the code.
	do("signed out for the code",
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#signup")))
	do("asked for a code",
		chromedp.Navigate(s.URL+"/login"),
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	code := codeRe.FindString(smtp.WaitMessage(t, email).Text)
	if code == "" {
		t.Fatal("the sign-in email has no 8-digit code")
	}
	other, cancelOther := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer cancelOther()
	// Its first run starts its target, which lives as long as other (a
	// step's timeout context would close it at the step's end).
	if err := chromedp.Do(other, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting a second browser context: %v", err)
	}
	doIn(other, "other browser asks for itself",
		chromedp.Navigate(s.URL+"/login"),
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), "someone-else@example.com"),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	doIn(other, "other browser refused the code",
		chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form[action="/login/code"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#error")))
	if body := textIn(other, "body"); strings.Contains(body, email) || strings.Contains(body, "API keys") {
		t.Errorf("the code signed in a browser that did not ask for it:\n%s", body)
	}
	do("signed in by code",
		chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form[action="/login/code"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#create-key")))
	do("second key",
		chromedp.SendKeys(chromedp.CSS("#key-name"), "second key"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	token2 := text("#new-key")
	if r := call(t, s.URL, token2, "GET", "/v1/me", ""); r.status != 200 {
		t.Fatalf("API with the second key: %d %s", r.status, r.body)
	}

	// The account page: this browser's session; the sign-in by code is
	// fresh, so the account can be deleted.
	do("account",
		chromedp.Click(chromedp.CSS("#account-link")),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
		chromedp.WaitVisible(chromedp.CSS("#delete-account")))
	if body := text("#sessions"); !strings.Contains(body, "this browser") || !strings.Contains(body, "HeadlessChrome") {
		t.Errorf("the sessions table:\n%s", body)
	}
	// Change the address: only the link to the new one changes it, and
	// it ends every session, so the browser signs in with the new one.
	const newEmail = "browser-new@example.com"
	do("email change requested",
		chromedp.SendKeys(chromedp.CSS("#new-email"), newEmail),
		chromedp.Click(chromedp.CSS("#change-email")),
		chromedp.WaitVisible(chromedp.CSS("#notice")))
	do("email change confirmed",
		chromedp.Navigate(smtp.WaitLink(t, newEmail)),
		chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#changed")))
	if notice := smtp.WaitMessage(t, email).Text; !strings.Contains(notice, "changed") || strings.Contains(notice, "/login/verify") {
		t.Errorf("the old address was not told of the change, or was sent a sign-in link:\n%s", notice)
	}
	do("signed out by the change",
		chromedp.Navigate(s.URL+"/app"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)))
	do("sign-in link to the new address",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), newEmail),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	do("signed in with the new address",
		chromedp.Navigate(smtp.WaitLink(t, newEmail)),
		chromedp.Click(chromedp.CSS(`form[action*="/login/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#create-key")))
	if r := call(t, s.URL, token2, "GET", "/v1/me", ""); r.status != 200 || !strings.Contains(string(r.body), newEmail) {
		t.Errorf("API after the email change: %d %s; want the key to work and report the new address", r.status, r.body)
	}
	do("account again",
		chromedp.Click(chromedp.CSS("#account-link")),
		chromedp.WaitVisible(chromedp.CSS("#delete-account")))
	do("account deleted",
		chromedp.SendKeys(chromedp.CSS("#confirm-email"), newEmail),
		chromedp.Click(chromedp.CSS("#delete-account")),
		chromedp.WaitVisible(chromedp.CSS("#notice")),
		chromedp.WaitVisible(chromedp.CSS("#signup")))
	if r := call(t, s.URL, token2, "GET", "/v1/me", ""); r.status != 401 {
		t.Errorf("API with the deleted account's key: %d, want 401", r.status)
	}
	do("app after deletion",
		chromedp.Navigate(s.URL+"/app"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)))
	// The deleted account's address signs nobody in to it: with the free
	// plan open, its link makes a new, empty account.
	do("sign-in asked for the deleted address",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), newEmail),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	do("a new, empty account",
		chromedp.Navigate(smtp.WaitLink(t, newEmail)),
		chromedp.Click(chromedp.CSS(`form[action*="/login/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#create-key")))
	if body := text("body"); strings.Contains(body, "second key") || strings.Contains(body, "browser key") {
		t.Errorf("signing in with the deleted account's address shows its keys:\n%s", body)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
	t.Logf("screenshots in %s", shots)
}

// seedUsage writes 29 days of made-up usage before today for the user's
// key to the usage tables, as the meters of earlier days would have.
func seedUsage(t *testing.T, s *testServer, email, keyID string) {
	t.Helper()
	ctx := context.Background()
	uid, _, err := s.Store().UserByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	today := usage.Day.Truncate(time.Now())
	b := usage.Batch{ID: "browser-history-" + runID, At: time.Now()}
	for i := 1; i < 30; i++ {
		c := usage.Counts{OK: int64(30 + (i*37)%70), ClientError: int64(i % 4)}
		if i%6 == 0 {
			c.Limited = int64(4 + i%5)
		}
		if i%13 == 0 {
			c.ServerError = 1
		}
		c.Cost = c.OK + c.ClientError + c.ServerError
		b.Counts = append(b.Counts, usage.Count{UserID: strconv.FormatInt(uid, 10), KeyID: keyID, Start: today.AddDate(0, 0, -i).Add(12 * time.Hour), Counts: c})
	}
	if err := s.Store().AddCounts(ctx, b); err != nil {
		t.Fatal(err)
	}
}
