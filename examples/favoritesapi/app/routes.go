package app

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/problem"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/usage"
)

//go:embed openapi.json
var openAPI []byte

// routes assembles the service's handler:
//
//   - /v1/ is the API: key middleware (with the plan check), then the
//     usage meter (which counts every authenticated request), then the
//     plan's decision (its rate limits and quota, the request's cost, one
//     decision per request), then the handlers;
//   - /webhooks/stripe is Stripe's, authenticated by its signature, and
//     /github/secret-scanning GitHub's, authenticated by its signature;
//   - everything else is the website. apikit's handlers refuse
//     cross-origin posts themselves; the site's own forms go through the
//     one http.CrossOriginProtection of the service (see form).
func (s *Server) routes() (http.Handler, error) {
	pages, err := parsePages(s.cfg.DevBilling())
	if err != nil {
		return nil, err
	}
	s.pages = pages
	// Every page and form of the site reads the session of the cookie it
	// is sent (LoadUser): one indexed read for any well-formed cookie, a
	// forged one included. /healthz pings the database. A client is held
	// to pagesPerMinute of each, before either.
	limitPages := s.memoryLimit("pages", true)
	limitHealth := s.memoryLimit("healthz", false)
	cop := http.NewCrossOriginProtection()
	form := func(h http.HandlerFunc) http.Handler { return cop.Handler(s.login.RequireUser(h)) }

	site := http.NewServeMux()
	s.login.Register(site)
	site.Handle("POST /signup", s.billing.CheckoutHandler())
	site.Handle("GET /billing/success", s.billing.SuccessHandler())
	site.Handle("/billing/portal", s.billing.PortalHandler())
	// The dashboard's upgrade and downgrade buttons.
	site.Handle("POST /billing/plan", s.billing.ChangePlanHandler())
	if s.cfg.DevBilling() {
		site.Handle("/billing/dev-checkout", s.billing.DevCheckoutHandler())
	}
	site.HandleFunc("GET /{$}", s.handleLanding)
	site.Handle("GET /app", s.login.RequireUser(http.HandlerFunc(s.handleDashboard)))
	site.Handle("POST /app/keys", form(s.limitKeys(s.handleCreateKey)))
	site.Handle("POST /app/keys/{id}/revoke", form(s.limitKeys(s.handleRevokeKey)))
	site.Handle("POST /app/keys/{id}/roll", form(s.limitKeys(s.handleRollKey)))
	site.Handle("GET /app/account", s.login.RequireUser(http.HandlerFunc(s.handleAccount)))
	site.Handle("POST /app/account/email", form(s.limitAccount(s.handleChangeEmail)))
	site.Handle("POST /app/account/sessions/{ref}/end", form(s.limitAccount(s.handleEndSession)))
	site.Handle("POST /app/account/sessions/end-others", form(s.limitAccount(s.handleEndOtherSessions)))
	site.Handle("POST /app/account/delete", form(s.limitAccount(s.handleDeleteAccount)))
	site.Handle("POST /app/sessions/revoke", form(s.limitAccount(s.handleSignOutEverywhere)))
	authn := apikey.Middleware(s.verifier, apikey.MiddlewareOptions{
		Realm: "favoritesapi",
		// The FavoritesAPI contract accepts the seed's base64(id:secret).
		AcceptLegacyBase64: true,
		Authorize:          s.authorize,
		ErrorHandler:       s.keyError,
		// Keys the cache cannot answer (forged ones among them: the
		// checksum is public) reach the database at most 60 times a minute
		// per client.
		LookupLimiter: apikey.LimiterFunc(s.abuseLimiter("key-lookup", ratelimit.PerMinute(60))),
		ClientKey:     s.clientKey,
		// Keys restricted to some networks are checked against the
		// client's address as the trusted proxies report it.
		ClientIP: s.clientIP,
		Logger:   s.logger,
	})
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/me", s.handleMe)
	api.HandleFunc("POST /v1/favorites", s.handleCreateFavorite)
	api.HandleFunc("GET /v1/favorites", s.handleListFavorites)
	api.HandleFunc("GET /v1/favorites/{id}", s.handleGetFavorite)
	api.HandleFunc("DELETE /v1/favorites/{id}", s.handleDeleteFavorite)
	api.Handle("GET /v1/usage", s.usageHandler())
	// Only requests that match no route get here: the ServeMux's own
	// answers would be plain text.
	api.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(api, r); allow != "" {
			w.Header().Set("Allow", allow)
			problem.Write(w, problem.New(http.StatusMethodNotAllowed, "method_not_allowed", "This endpoint does not support "+r.Method+"."))
			return
		}
		problem.Write(w, problem.New(http.StatusNotFound, "not_found", "There is no such API endpoint; see /openapi.json."))
	})

	root := http.NewServeMux()
	// One decision per request: the plan's limits and quota, the request's
	// cost; the headers on every response; 429 when refused.
	limit := plan.Middleware(s.decider, plan.MiddlewareOptions{
		Request: s.planRequest,
		Cost:    requestCost,
		Logger:  s.logger,
	})
	// The meter sits between the key and the plan, so that the plan's
	// 429s are counted too; inside the plan, the decision's cost is
	// reported to it (and what is used of the quota to the alerts).
	count := s.meter.Middleware(usage.MiddlewareOptions{Identity: principalIdentity, Cost: meterCost})
	root.Handle("/v1/", routeOf(api, authn(count(limit(s.reportDecision(routed(api)))))))
	root.Handle("POST /webhooks/stripe", s.billing.WebhookHandler())
	// GitHub's reports of keys found in public, authenticated by GitHub's
	// signature: no session, no cross-origin check (package secretscan).
	// Each request reads up to 1 MiB and checks an ECDSA signature, so a
	// client is held to secretScanPerMinute before either is done.
	root.Handle("POST /github/secret-scanning", s.limitSecretScan(s.secretScan))
	// Resources that need neither a user nor protection from cross-origin
	// posts are served without the session lookup.
	root.Handle("GET /healthz", limitHealth(http.HandlerFunc(s.handleHealth)))
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	// The quota-exceeded problem type is a relative URI: this page
	// documents it (RFC 9457, section 3.1.1).
	root.Handle("GET "+plan.QuotaExceededType, limitPages(s.login.LoadUser(http.HandlerFunc(s.handleQuotaProblem))))
	root.Handle("GET "+apikey.AddressNotAllowedType, limitPages(s.login.LoadUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, "address-not-allowed", "Address not allowed — FavoritesAPI", nil)
	}))))
	root.Handle("GET /static/", staticHandler())
	root.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	// LoadUser puts the signed-in user, if any, in every page's context:
	// the layout shows it, and billing's portal asks for it.
	// withActor names the signed-in user in the security log's events.
	root.Handle("/", routeOf(site, limitPages(s.login.LoadUser(withActor(routed(site))))))
	// Every request is timed by its route pattern (and, when traced, a
	// span of its own).
	// In front of every handler: every event of the security log carries
	// the client's address (as the trusted proxies report it) and user
	// agent, the Stripe webhook's and GitHub's reports included. (Inside
	// instrument, which names the route on the request it was given.)
	h := s.instrument(audit.Middleware(s.clientIP)(securityHeaders(root, strings.HasPrefix(s.cfg.BaseURL, "https://"))))
	if s.tracer != nil {
		h = s.traced(h)
	}
	return h, nil
}

// pagesPerMinute bounds a client's requests to the website that carry
// cookies (its pages, its forms, the problem pages), and separately its
// requests to /healthz, on each instance: someone reading the site makes
// a few a minute, a load balancer's health checks fewer; a stranger
// sending forged session cookies is held to this many session reads a
// minute. The forms' own, stricter limits apply as well.
const pagesPerMinute = 300

// memoryLimit returns the middleware that holds a client to
// pagesPerMinute (a plain-text 429 with Retry-After past it) before next
// reads anything; with cookiesOnly, requests without a Cookie header,
// which cost no session read, pass uncounted. The budgets are kept in
// this instance's memory, not in Redis: a round trip per page would cost
// what the limit saves, so a fleet of n instances lets a client make n
// times as many. The memory limiter, full, refuses new clients rather
// than forget spent budgets; budgets refill within a minute, so only a
// flood from more than ratelimit.DefaultMaxKeys clients a minute fills it.
func (s *Server) memoryLimit(name string, cookiesOnly bool) func(http.Handler) http.Handler {
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: s.now})
	limit := ratelimit.PerMinute(pagesPerMinute)
	allow := func(ctx context.Context, client string) (bool, error) {
		d, err := mem.Allow(ctx, client, limit)
		return d.Allowed, err
	}
	return func(next http.Handler) http.Handler {
		limited := s.limitClient(name, allow, time.Minute, next.ServeHTTP, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Too many requests from your network. Try again in a minute.", http.StatusTooManyRequests)
		})
		if !cookiesOnly {
			return limited
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Header["Cookie"]; !ok {
				next.ServeHTTP(w, r)
				return
			}
			limited(w, r)
		})
	}
}

// secretScanPerMinute bounds a client's requests to the secret scanning
// endpoint: GitHub sends a report per batch of up to 1,000 tokens found,
// far fewer than this; a stranger posting signed-looking garbage is held
// to it.
const secretScanPerMinute = 60

// limitSecretScan refuses a client's requests past secretScanPerMinute
// with 429 (problem+json, Retry-After), failing closed, before next reads
// the body.
func (s *Server) limitSecretScan(next http.Handler) http.Handler {
	allow := s.abuseLimiter("secret-scanning", ratelimit.PerMinute(secretScanPerMinute))
	return s.limitClient("secret-scanning", allow, time.Minute, next.ServeHTTP, func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(http.StatusTooManyRequests, "rate_limited", "Too many requests from this client. Try again later."))
	})
}

// keyError writes apikey's refusal, and says so when a key of the other
// environment (fav_live on a test deployment, or the reverse) is refused,
// rather than calling it malformed.
func (s *Server) keyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, apikey.ErrMalformed) {
		own := s.cfg.KeyEnvPrefix()
		other := s.cfg.KeyPrefix + "_live"
		if s.cfg.LiveKeys() {
			other = s.cfg.KeyPrefix + "_test"
		}
		tok := r.Header.Get("X-API-Key")
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			tok = strings.TrimSpace(auth[7:])
		}
		if strings.HasPrefix(tok, other+"_") {
			problem.Write(w, problem.New(http.StatusUnauthorized, "invalid_token",
				"This is a "+other+" key; this service accepts "+own+" keys only. Use a key from this service's dashboard."))
			return
		}
	}
	apikey.WriteError(w, r, err)
}

// authorize lets a verified key call the API only while its owner has a
// plan: an entitling subscription, or the free plan if there is one
// (package billing decides, from a short cache).
func (s *Server) authorize(ctx context.Context, p apikey.Principal) error {
	cp, err := s.userPlan(ctx, p.UserID)
	if err != nil {
		return err
	}
	if cp.Plan == nil {
		return apikey.Forbid(s.noPlanDetail())
	}
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.logger.Warn("health check: database unreachable", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// securityHeaders sets the headers every response of the service carries.
// Pages load nothing from other origins and run no scripts. A service
// whose BASE_URL is https tells browsers to use nothing else for a year
// (HSTS), so that no one on the network can strip TLS from a later visit.
func securityHeaders(next http.Handler, https bool) http.Handler {
	// The values are built once and shared by every response, where
	// Header.Set would allocate each of them again per request. Nothing
	// changes a header's values in place (Set replaces the slice, Add
	// appends past its capacity, into a new one).
	nosniff := []string{"nosniff"}
	hsts := []string{"max-age=31536000"}
	csp := []string{"default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; form-action 'self' https://checkout.stripe.com https://billing.stripe.com; frame-ancestors 'none'; base-uri 'none'"}
	deny := []string{"DENY"}
	sameOrigin := []string{"same-origin"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = nosniff
		if https {
			h["Strict-Transport-Security"] = hsts
		}
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			h["Content-Security-Policy"] = csp
			h["X-Frame-Options"] = deny
			h["Referrer-Policy"] = sameOrigin
		}
		next.ServeHTTP(w, r)
	})
}

// allowed lists the methods the mux serves r's path with.
func allowed(mux *http.ServeMux, r *http.Request) string {
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/v1/" {
			methods = append(methods, m)
		}
	}
	if slices.Contains(methods, http.MethodGet) {
		methods = append(methods, http.MethodHead)
	}
	return strings.Join(methods, ", ")
}
