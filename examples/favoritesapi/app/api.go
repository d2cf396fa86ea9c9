package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/problem"
)

// Limits of the favorites API, as documented in openapi.json.
const (
	maxBodyBytes   = 64 << 10
	maxNameLen     = 200
	maxURLLen      = 2048
	maxTags        = 10
	maxTagLen      = 50
	defaultPageLen = 20
	maxPageLen     = 100
)

// meResponse is the body of GET /v1/me.
type meResponse struct {
	User struct {
		Email string `json:"email"`
	} `json:"user"`
	Key struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		// Environment is "live" or "test".
		Environment string `json:"environment"`
		// Metadata is the JSON object set when the key was issued, or
		// null.
		Metadata json.RawMessage `json:"metadata"`
		// Tags are the key's tags ([] for none).
		Tags []string `json:"tags"`
		// AllowedNetworks are the networks the key is restricted to ([]
		// for every network).
		AllowedNetworks []string `json:"allowed_networks"`
	} `json:"key"`
	Plan planState `json:"plan"`
	// RateLimit is the plan's first rate limit, as before plans had
	// several.
	RateLimit struct {
		Limit         int   `json:"limit"`
		PeriodSeconds int64 `json:"period_seconds"`
	} `json:"rate_limit"`
}

// planState is a plan and what its caller has left of it, after the
// request that asks.
type planState struct {
	Name    string       `json:"name"`
	Status  string       `json:"status"` // the subscription's, or "none"
	Budget  string       `json:"budget"` // "user": shared by all the user's keys; "key": each key's own
	Metered bool         `json:"metered"`
	Limits  []limitState `json:"limits"`
	Quota   *quotaState  `json:"quota"` // null: no quota
}

type limitState struct {
	Name          string `json:"name"` // as in the RateLimit headers: "10/s"
	Limit         int    `json:"limit"`
	PeriodSeconds int64  `json:"period_seconds"`
	Remaining     int64  `json:"remaining"`
}

type quotaState struct {
	Name      string    `json:"name"` // "10000/month"
	Limit     int64     `json:"limit"`
	Period    string    `json:"period"` // day, month or period (the billing period)
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at"`
	// PeriodStart is when the quota's period began (for the dashboard).
	PeriodStart time.Time `json:"-"`
}

// newPlanState describes p and the state d reports (overrides applied).
func newPlanState(p *plan.Plan, status string, d *plan.Decision) planState {
	st := planState{Name: p.Name, Status: status, Budget: p.Budget.String(), Metered: p.Metered, Limits: []limitState{}}
	for _, pol := range d.Policies() {
		if q := pol.Quota; pol.IsQuota() {
			st.Quota = &quotaState{
				Name: q.String(), Limit: q.Count, Period: q.Period.String(),
				Used: max(0, q.Count-pol.Remaining), Remaining: pol.Remaining, ResetsAt: d.PeriodEnd.UTC(),
				PeriodStart: d.PeriodStart.UTC(),
			}
			continue
		}
		st.Limits = append(st.Limits, limitState{
			Name: pol.Name(), Limit: pol.Limit.Count, PeriodSeconds: int64(pol.Limit.Period.Seconds()), Remaining: pol.Remaining,
		})
	}
	return st
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, _ := apikey.PrincipalFrom(ctx)
	email, found, err := s.store.UserEmail(ctx, p.UserID)
	if err != nil || !found {
		s.internalError(w, r, fmt.Errorf("reading user %d: found %v: %w", p.UserID, found, err))
		return
	}
	status, err := s.planStatus(ctx, p.UserID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	// The plan this request was decided under, and its state after it.
	d, ok := plan.DecisionFrom(ctx)
	if !ok {
		s.internalError(w, r, errors.New("GET /v1/me without a plan decision"))
		return
	}
	pl, ok := s.plans.Plan(d.Plan)
	if !ok {
		s.internalError(w, r, fmt.Errorf("GET /v1/me decided under an unknown plan %q", d.Plan))
		return
	}
	var body meResponse
	body.User.Email = email
	body.Key.ID, body.Key.Name, body.Key.Environment = p.KeyID, p.Name, p.Environment
	body.Key.Metadata = p.Metadata
	if body.Key.Metadata == nil {
		body.Key.Metadata = json.RawMessage("null")
	}
	body.Key.Tags = append([]string{}, p.Tags...)
	body.Key.AllowedNetworks = []string{}
	for _, c := range p.AllowedCIDRs {
		body.Key.AllowedNetworks = append(body.Key.AllowedNetworks, c.String())
	}
	body.Plan = newPlanState(pl, status, d)
	if len(body.Plan.Limits) > 0 {
		body.RateLimit.Limit = body.Plan.Limits[0].Limit
		body.RateLimit.PeriodSeconds = body.Plan.Limits[0].PeriodSeconds
	}
	writeJSON(w, http.StatusOK, body)
}

// favoriteInput is the body of POST /v1/favorites. Pointers tell a missing
// field from an empty one.
type favoriteInput struct {
	Name *string  `json:"name"`
	URL  *string  `json:"url"`
	Tags []string `json:"tags"`
}

func (s *Server) handleCreateFavorite(w http.ResponseWriter, r *http.Request) {
	var in favoriteInput
	if !decodeJSON(w, r, &in) {
		return
	}
	if invalid := validateFavorite(in); len(invalid) > 0 {
		p := problem.New(http.StatusUnprocessableEntity, "validation_failed", invalid[0].Name+": "+invalid[0].Reason)
		p.InvalidParams = invalid
		problem.Write(w, p)
		return
	}
	ctx := r.Context()
	p, _ := apikey.PrincipalFrom(ctx)
	dbctx, end := s.span(ctx, "favorites.create")
	fav, err := s.favs.create(dbctx, p.UserID, strings.TrimSpace(*in.Name), *in.URL, in.Tags, s.now())
	end(err)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("creating favorite: %w", err))
		return
	}
	w.Header().Set("Location", "/v1/favorites/"+fav.ID)
	writeFavorite(w, http.StatusCreated, fav)
}

// validateFavorite returns every invalid field, in field order.
func validateFavorite(in favoriteInput) []problem.InvalidParam {
	var invalid []problem.InvalidParam
	bad := func(name, reason string) { invalid = append(invalid, problem.InvalidParam{Name: name, Reason: reason}) }
	switch {
	case in.Name == nil:
		bad("name", "is required")
	case !validText(strings.TrimSpace(*in.Name), 1, maxNameLen):
		bad("name", fmt.Sprintf("must be 1 to %d characters of text", maxNameLen))
	}
	switch {
	case in.URL == nil:
		bad("url", "is required")
	case !validURL(*in.URL):
		bad("url", "must be an absolute http or https URL of at most 2048 characters")
	}
	if len(in.Tags) > maxTags {
		bad("tags", fmt.Sprintf("must be at most %d tags", maxTags))
	}
	for i, tag := range in.Tags {
		if !validText(tag, 1, maxTagLen) || strings.TrimSpace(tag) != tag {
			bad(fmt.Sprintf("tags[%d]", i), fmt.Sprintf("must be 1 to %d characters of text without surrounding spaces", maxTagLen))
			break
		}
	}
	return invalid
}

// validText reports whether s is valid UTF-8 of min to max characters
// without control characters.
func validText(s string, min, max int) bool {
	n := utf8.RuneCountInString(s)
	return n >= min && n <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

func validURL(s string) bool {
	if len(s) > maxURLLen || strings.ContainsFunc(s, unicode.IsControl) {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// listResponse is the body of GET /v1/favorites.
type listResponse struct {
	Favorites  []Favorite `json:"favorites"`
	NextCursor *string    `json:"next_cursor"`
}

func (s *Server) handleListFavorites(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultPageLen
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLen {
			p := problem.New(http.StatusBadRequest, "invalid_parameter", fmt.Sprintf("limit must be an integer from 1 to %d", maxPageLen))
			p.InvalidParams = []problem.InvalidParam{{Name: "limit", Reason: "must be from 1 to 100"}}
			problem.Write(w, p)
			return
		}
		limit = n
	}
	var after cursorPos
	if q.Has("cursor") {
		var err error
		if after, err = decodeCursor(q.Get("cursor")); err != nil {
			p := problem.New(http.StatusBadRequest, "invalid_parameter", "cursor is not a cursor this API returned")
			p.InvalidParams = []problem.InvalidParam{{Name: "cursor", Reason: "is invalid"}}
			problem.Write(w, p)
			return
		}
	}
	ctx := r.Context()
	p, _ := apikey.PrincipalFrom(ctx)
	dbctx, end := s.span(ctx, "favorites.list")
	favs, next, err := s.favs.list(dbctx, p.UserID, limit, after)
	end(err)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("listing favorites: %w", err))
		return
	}
	body := listResponse{Favorites: favs}
	if next.ID != "" {
		c := encodeCursor(next)
		body.NextCursor = &c
	}
	writeList(w, http.StatusOK, body)
}

func (s *Server) handleGetFavorite(w http.ResponseWriter, r *http.Request) {
	s.withFavorite(w, r, "reading", func(ctx context.Context, userID int64, id string) (bool, error) {
		dbctx, end := s.span(ctx, "favorites.get")
		fav, found, err := s.favs.get(dbctx, userID, id)
		end(err)
		if found {
			writeFavorite(w, http.StatusOK, fav)
		}
		return found, err
	})
}

func (s *Server) handleDeleteFavorite(w http.ResponseWriter, r *http.Request) {
	s.withFavorite(w, r, "deleting", func(ctx context.Context, userID int64, id string) (bool, error) {
		dbctx, end := s.span(ctx, "favorites.delete")
		deleted, err := s.favs.delete(dbctx, userID, id)
		end(err)
		if deleted {
			w.WriteHeader(http.StatusNoContent)
		}
		return deleted, err
	})
}

// withFavorite runs do for the caller's favorite named in the path: an id
// that cannot be a favorite's, or a favorite do does not find (another
// user's included), is a 404; a failure is a 500 problem, logged as what.
func (s *Server) withFavorite(w http.ResponseWriter, r *http.Request, what string, do func(ctx context.Context, userID int64, id string) (bool, error)) {
	id := r.PathValue("id")
	if !validFavoriteID(id) {
		notFound(w)
		return
	}
	ctx := r.Context()
	p, _ := apikey.PrincipalFrom(ctx)
	found, err := do(ctx, p.UserID, id)
	switch {
	case err != nil:
		s.internalError(w, r, fmt.Errorf("%s favorite: %w", what, err))
	case !found:
		notFound(w)
	}
}

func notFound(w http.ResponseWriter) {
	problem.Write(w, problem.New(http.StatusNotFound, "not_found", "There is no favorite with this id."))
}

// decodeJSON reads a JSON request body of at most maxBodyBytes into v,
// answering 415, 413 or 400 problems itself and returning false when the
// body is unusable. Unknown fields are refused, so that typos are noticed.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			problem.Write(w, problem.New(http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as application/json."))
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		problem.Write(w, problem.New(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("The body is larger than %d KiB.", maxBodyBytes>>10)))
	case errors.As(err, &typeErr) && typeErr.Field != "":
		p := problem.New(http.StatusUnprocessableEntity, "validation_failed", typeErr.Field+": has the wrong type")
		p.InvalidParams = []problem.InvalidParam{{Name: typeErr.Field, Reason: "must be a " + jsonType(typeErr.Type.String())}}
		problem.Write(w, p)
	default:
		detail := "The body is not valid JSON."
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			detail = "The body has an unknown field " + msg + "."
		}
		problem.Write(w, problem.New(http.StatusBadRequest, "malformed_json", detail))
	}
	return false
}

func jsonType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "list of strings"
	case strings.Contains(goType, "string"):
		return "string"
	}
	return goType
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// internalError logs err and answers 500, or 503 when the database is
// unreachable, without revealing anything about the failure.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	if s.store.Ping(r.Context()) != nil {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "unavailable", "The service is temporarily unavailable; try again shortly."))
		return
	}
	problem.Write(w, problem.New(http.StatusInternalServerError, "internal_error", "Something went wrong on our side."))
}
