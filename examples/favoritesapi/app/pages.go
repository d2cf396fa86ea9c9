package app

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
)

//go:embed templates static
var assets embed.FS

// maxKeysPerUser bounds the keys one account may hold (revoked ones
// included), so that a script on the dashboard cannot fill the database.
const maxKeysPerUser = 50

// maxFormBytes caps the dashboard's form bodies: a key's name, its
// metadata (at most apikey.MaxMetadataLen once compact), tags and
// networks, form-encoded.
const maxFormBytes = 8 << 10

// pageSet maps a page name to its template (the layout plus the page).
type pageSet map[string]*template.Template

// devBanner tops every page while billing runs in dev mode.
const devBanner = `<div class="devmode" role="status">DEV MODE — billing is simulated and no payment is taken (no STRIPE_SECRET_KEY is set).</div>`

// withDevBanner defines the template "devbanner" in t: the banner in dev
// mode, nothing otherwise.
func withDevBanner(t *template.Template, dev bool) (*template.Template, error) {
	banner := ""
	if dev {
		banner = devBanner
	}
	if _, err := t.New("devbanner").Parse(banner); err != nil {
		return nil, err
	}
	return t, nil
}

// signinFrame is the "head" and "foot" of magiclink's sign-in pages, so
// that they look like the rest of the site.
func signinFrame(dev bool) (*template.Template, error) {
	t, err := template.ParseFS(assets, "templates/signin/frame.html")
	if err != nil {
		return nil, err
	}
	return withDevBanner(t, dev)
}

func parsePages(dev bool) (pageSet, error) {
	funcs := template.FuncMap{
		"thousands": thousands,
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	if layout, err = withDevBanner(layout, dev); err != nil {
		return nil, err
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := pageSet{}
	for _, name := range names {
		base := strings.TrimPrefix(name, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(assets, name)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(base, ".html")] = t
	}
	return pages, nil
}

// staticHandler serves the files of the static folder under /static/, and
// nothing else: not the templates beside it, and no folder listings.
func staticHandler() http.Handler {
	dir, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	files := http.StripPrefix("/static/", http.FileServerFS(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Files only: a folder would be listed.
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// pageData is what every page's layout needs.
type pageData struct {
	Title string
	User  *magiclink.User
	Page  any
}

// render writes the named page. It renders into a buffer first, so that a
// template error is a clean 500, not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, page any) {
	data := pageData{Title: title, Page: page}
	if u, ok := magiclink.UserFrom(r.Context()); ok {
		data.User = &u
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		s.logger.Error("rendering page", "page", name, "error", err)
		http.Error(w, "Something went wrong on our side.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type landingPage struct {
	BaseURL   string
	KeyPrefix string
	Plans     []planView
	Default   string // the plan checked at first
	Notice    string // after an account was deleted
}

func (s *Server) handleLanding(w http.ResponseWriter, r *http.Request) {
	p := landingPage{BaseURL: s.cfg.BaseURL, KeyPrefix: s.cfg.KeyEnvPrefix()}
	if r.URL.Query().Get("account") == "deleted" {
		p.Notice = "Your account was deleted: its keys, sessions, address and favorites are gone."
	}
	for _, pl := range s.plans.Plans() {
		p.Plans = append(p.Plans, viewPlan(pl))
		if p.Default == "" && !pl.IsFree() {
			p.Default = pl.Name
		}
	}
	if p.Default == "" && len(p.Plans) > 0 {
		p.Default = p.Plans[0].Name
	}
	s.render(w, r, http.StatusOK, "landing", "FavoritesAPI — your bookmarks, as an API", p)
}

// handleQuotaProblem documents the quota-exceeded problem type.
func (s *Server) handleQuotaProblem(w http.ResponseWriter, r *http.Request) {
	var plans []planView
	for _, p := range s.plans.Plans() {
		plans = append(plans, viewPlan(p))
	}
	s.render(w, r, http.StatusOK, "quota-exceeded", "Quota exceeded — FavoritesAPI", plans)
}

// keyView is one row of the dashboard's key table.
type keyView struct {
	ID, Name, Prefix, State string
	CreatedAt, LastUsedAt   time.Time
	// ExpiresAt is when the key stops working (zero: never).
	ExpiresAt time.Time
	// Environment is "live" or "test", as the key's prefix says.
	Environment string
	Tags        []string
	Networks    []string
	Metadata    string // compact JSON, "" for none
	Usable      bool
}

// expiryChoices are the dashboard's choices of a new key's lifetime, in
// days (0: never).
var expiryChoices = []int{0, 30, 90, 365}

// eventView is one row of the dashboard's "Security activity".
type eventView struct {
	Time                       time.Time
	Kind, Actor, IP, UserAgent string
	KeyID                      string
}

type dashboardPage struct {
	Email        string
	Subscription billing.Subscription
	Subscribed   bool
	Entitled     bool
	Keys         []keyView
	BaseURL      string
	// Plan is the user's plan (nil: none, so keys are refused), Usage
	// what is left of its quota, and OtherPlans those they may switch to.
	Plan       *planView
	PerKey     bool
	Usage      *quotaState
	OtherPlans []planView
	// Charts are the usage charts: the account's and each key's; nil if
	// the usage could not be read (the dashboard works without them).
	Charts   *usageCharts
	NewKey   string // the full token of a key just issued or rolled, shown once
	NewKeyID string
	Rolled   bool
	Error    string
	// Expiries are the choices of a new key's lifetime, in days (0:
	// never).
	Expiries []int
	// Activity is the account's security log, newest first (the last
	// securityActivityLen events); nil if it could not be read.
	Activity []eventView
}

// dashboard gathers what /app shows for the signed-in user.
func (s *Server) dashboard(r *http.Request) (dashboardPage, error) {
	ctx := r.Context()
	u, _ := magiclink.UserFrom(ctx)
	p := dashboardPage{Email: u.Email, BaseURL: s.cfg.BaseURL, Expiries: expiryChoices}
	var err error
	if p.Subscription, p.Subscribed, err = s.billing.Subscription(ctx, u.ID); err != nil {
		return p, err
	}
	if p.Entitled, err = s.billing.Entitled(ctx, u.ID); err != nil {
		return p, err
	}
	cp, err := s.userPlan(ctx, u.ID)
	if err != nil {
		return p, err
	}
	if cp.Plan != nil {
		v := viewPlan(cp.Plan)
		p.Plan, p.PerKey = &v, cp.Plan.Budget == plan.PerKey
		p.Usage = s.quotaUsage(ctx, u.ID, cp)
	}
	for _, pl := range s.plans.Plans() {
		if cp.Plan == nil || pl.Name != cp.Plan.Name {
			p.OtherPlans = append(p.OtherPlans, viewPlan(pl))
		}
	}
	keys, err := s.keys.List(ctx, u.ID)
	if err != nil {
		return p, err
	}
	now := s.now()
	for _, k := range keys {
		state := k.State(now)
		v := keyView{
			ID: k.ID, Name: k.Name, Prefix: k.Prefix, State: state,
			CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt,
			Environment: k.Environment(), Tags: k.Tags, Metadata: string(k.Metadata),
			Usable: state == apikey.StateActive,
		}
		for _, c := range k.AllowedCIDRs {
			v.Networks = append(v.Networks, c.String())
		}
		p.Keys = append(p.Keys, v)
	}
	if p.Activity, err = s.activity(ctx, u.ID); err != nil {
		s.logger.Warn("reading the security log for the dashboard", "user", u.ID, "error", err)
	}
	var periodStart time.Time
	var used, limit int64
	if p.Usage != nil {
		periodStart, used, limit = p.Usage.PeriodStart, p.Usage.Used, p.Usage.Limit
	} else {
		periodStart = time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if p.Charts, err = s.usageCharts(ctx, u.ID, p.Keys, periodStart, used, limit); err != nil {
		s.logger.Warn("reading usage for the dashboard's charts", "user", u.ID, "error", err)
		p.Charts = nil
	}
	return p, nil
}

func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	p, err := s.dashboard(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "app", "Your FavoritesAPI account", p)
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		s.dashboardError(w, r, status, "That form could not be read; keep the name under 100 characters and the metadata under 1 KB.")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if name == "" {
		s.dashboardError(w, r, http.StatusUnprocessableEntity, "Give the key a name, such as “production server”.")
		return
	}
	opts, msg := keyOptions(r.PostForm)
	if msg != "" {
		s.dashboardError(w, r, http.StatusUnprocessableEntity, msg)
		return
	}
	opts.Name = name
	ctx := r.Context()
	u, _ := magiclink.UserFrom(ctx)
	k, tok, err := s.keys.Issue(ctx, u.ID, opts)
	if errors.Is(err, apikey.ErrTooManyKeys) {
		s.dashboardError(w, r, http.StatusUnprocessableEntity, fmt.Sprintf("An account can hold at most %d keys.", maxKeysPerUser))
		return
	}
	if errors.Is(err, apikey.ErrInvalidOptions) {
		s.dashboardError(w, r, http.StatusUnprocessableEntity,
			"That key cannot be created: "+strings.TrimPrefix(err.Error(), apikey.ErrInvalidOptions.Error()+": "))
		return
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.logger.Info("key issued", "user", u.ID, "key", k.ID)
	s.showNewKey(w, r, k, tok, false)
}

// showNewKey renders the dashboard with the token of a key just issued or
// rolled: the only time it is ever shown.
func (s *Server) showNewKey(w http.ResponseWriter, r *http.Request, k apikey.Key, tok apikey.Token, rolled bool) {
	p, err := s.dashboard(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p.NewKey, p.NewKeyID, p.Rolled = tok.Reveal(), k.ID, rolled
	s.render(w, r, http.StatusOK, "app", "Your new API key", p)
}

// dashboardError renders the dashboard with a message saying why the
// request was refused.
func (s *Server) dashboardError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p, err := s.dashboard(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p.Error = msg
	s.render(w, r, status, "app", "Your FavoritesAPI account", p)
}

// keyActionError answers a failed key action: a key that is not the
// user's (or does not exist) is one 404, whatever the reason.
func (s *Server) keyActionError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, apikey.ErrNotFound):
		s.dashboardError(w, r, http.StatusNotFound, "There is no such key in your account.")
	case apikey.StatusCode(err) == http.StatusUnauthorized || errors.Is(err, apikey.ErrRevoked):
		s.dashboardError(w, r, http.StatusConflict, "Only an active key can be rolled.")
	default:
		s.pageError(w, r, err)
	}
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	u, _ := magiclink.UserFrom(r.Context())
	id := r.PathValue("id")
	if err := s.keys.RevokeOwned(r.Context(), u.ID, id); err != nil && !errors.Is(err, apikey.ErrRevoked) {
		s.keyActionError(w, r, err)
		return
	}
	s.logger.Info("key revoked", "user", u.ID, "key", id)
	http.Redirect(w, r, "/app", http.StatusSeeOther)
}

func (s *Server) handleRollKey(w http.ResponseWriter, r *http.Request) {
	u, _ := magiclink.UserFrom(r.Context())
	k, tok, err := s.keys.RollOwned(r.Context(), u.ID, r.PathValue("id"), RollGrace)
	if err != nil {
		s.keyActionError(w, r, err)
		return
	}
	s.logger.Info("key rolled", "user", u.ID, "key", k.ID)
	s.showNewKey(w, r, k, tok, true)
}

// pageError logs err and renders a page saying something went wrong,
// without its details.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.LogAttrs(r.Context(), slog.LevelError, "page failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	status := http.StatusInternalServerError
	if s.store.Ping(r.Context()) != nil {
		status = http.StatusServiceUnavailable
	}
	s.render(w, r, status, "error", "Something went wrong", nil)
}

// keyOptions reads the new-key form's lifetime, metadata, tags and
// networks; msg says what is wrong with them, if anything. Their limits
// are apikey's (checked again by Issue).
func keyOptions(form url.Values) (opts apikey.IssueOptions, msg string) {
	if v := form.Get("expires"); v != "" && v != "0" {
		days, err := strconv.Atoi(v)
		if err != nil || !slices.Contains(expiryChoices, days) {
			return opts, "Choose when the key expires: never, or in 30, 90 or 365 days."
		}
		opts.ExpiresIn = time.Duration(days) * 24 * time.Hour
	}
	if v := strings.TrimSpace(form.Get("metadata")); v != "" {
		if len(v) > 2*apikey.MaxMetadataLen || !json.Valid([]byte(v)) || v[0] != '{' {
			return opts, fmt.Sprintf("The metadata must be a JSON object of at most %d bytes, such as {\"customer\": \"acme\"}.", apikey.MaxMetadataLen)
		}
		opts.Metadata = json.RawMessage(v)
	}
	opts.Tags = strings.FieldsFunc(form.Get("tags"), func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(opts.Tags) > apikey.MaxTags {
		return opts, fmt.Sprintf("A key may carry at most %d tags.", apikey.MaxTags)
	}
	networks, err := apikey.ParseCIDRs(form.Get("networks"))
	if err != nil {
		return opts, "Allowed networks: " + strings.TrimPrefix(err.Error(), apikey.ErrInvalidOptions.Error()+": ") +
			". List networks such as 203.0.113.0/24 or addresses, separated by commas; leave it empty to allow every network."
	}
	opts.AllowedCIDRs = networks
	return opts, ""
}

// activity returns the account's last events of the security log, newest
// first, for the dashboard.
func (s *Server) activity(ctx context.Context, userID int64) ([]eventView, error) {
	events, _, err := s.audit.List(ctx, userID, audit.Page{Limit: securityActivityLen})
	if err != nil {
		return nil, err
	}
	out := make([]eventView, 0, len(events))
	for _, e := range events {
		v := eventView{Time: e.Time, Kind: string(e.Kind), Actor: string(e.Actor.Kind), UserAgent: e.UserAgent, KeyID: e.KeyID}
		if e.Actor.Kind == audit.ActorOperator && e.Actor.ID != "" {
			v.Actor += " " + e.Actor.ID
		}
		if e.IP.IsValid() {
			v.IP = e.IP.String()
		}
		out = append(out, v)
	}
	return out, nil
}
