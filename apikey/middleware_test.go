package apikey_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apikit/apikit/apikey"
)

// serve runs one request through the middleware and reports the response
// and whether the wrapped handler ran.
func serve(t *testing.T, h func(http.Handler) http.Handler, req *http.Request) (*httptest.ResponseRecorder, *apikey.Principal) {
	t.Helper()
	var got *apikey.Principal
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := apikey.PrincipalFrom(r.Context())
		if !ok {
			t.Error("handler ran without a principal in the context")
		}
		got = &p
		w.WriteHeader(http.StatusNoContent)
	})
	rec := httptest.NewRecorder()
	h(next).ServeHTTP(rec, req)
	return rec, got
}

type problemBody struct {
	Type, Title, Detail, Code string
	Status                    int
}

func TestMiddleware(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	k, token := f.issue(t, apikey.IssueOptions{Name: "ci"})
	_, revoked := f.issue(t, apikey.IssueOptions{})
	rt, _ := apikey.Parse(revoked)
	if err := f.m.Revoke(ctx, rt.ID); err != nil {
		t.Fatal(err)
	}
	secret := token[len(token)-apikey.SecretLen-apikey.CheckLen:]
	legacy := base64.StdEncoding.EncodeToString([]byte(k.ID + ":" + secret[:apikey.SecretLen]))
	legacyWithCheck := base64.StdEncoding.EncodeToString([]byte(k.ID + ":" + secret))
	legacyBadCheck := base64.StdEncoding.EncodeToString([]byte(k.ID + ":" + secret[:apikey.SecretLen] + "000000"))
	legacyWrong := base64.RawURLEncoding.EncodeToString([]byte(k.ID + ":" + strings.Repeat("A", apikey.SecretLen)))

	const (
		challenge = `Bearer realm="api"`
		invalid   = `Bearer realm="api", error="invalid_token"`
		badReq    = `Bearer realm="api", error="invalid_request"`
	)
	for _, tc := range []struct {
		name      string
		target    string
		header    http.Header
		status    int
		challenge string
		code      string
	}{
		{"Bearer", "/", http.Header{"Authorization": {"Bearer " + token}}, 204, "", ""},
		{"BearerCaseInsensitive", "/", http.Header{"Authorization": {"bearer " + token}}, 204, "", ""},
		{"XAPIKey", "/", http.Header{"X-Api-Key": {token}}, 204, "", ""},
		{"LegacyBase64", "/", http.Header{"Authorization": {"Bearer " + legacy}}, 204, "", ""},
		{"LegacyBase64WithCheck", "/", http.Header{"Authorization": {"Bearer " + legacyWithCheck}}, 204, "", ""},
		{"LegacyBadCheck", "/", http.Header{"Authorization": {"Bearer " + legacyBadCheck}}, 401, invalid, "invalid_token"},
		{"LegacyInXAPIKey", "/", http.Header{"X-Api-Key": {legacy}}, 401, invalid, "invalid_token"},
		{"LegacyWrongSecret", "/", http.Header{"Authorization": {"Bearer " + legacyWrong}}, 401, invalid, "invalid_token"},
		{"Missing", "/", nil, 401, challenge, "missing_token"},
		{"OtherScheme", "/", http.Header{"Authorization": {"Basic " + legacy}}, 401, challenge, "missing_token"},
		{"EmptyBearer", "/", http.Header{"Authorization": {"Bearer "}}, 401, invalid, "invalid_token"},
		{"Garbage", "/", http.Header{"Authorization": {"Bearer hello"}}, 401, invalid, "invalid_token"},
		{"Oversized", "/", http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 10000)}}, 401, invalid, "invalid_token"},
		{"Typo", "/", http.Header{"Authorization": {"Bearer " + lastChanged(token)}}, 401, invalid, "invalid_token"},
		{"Revoked", "/", http.Header{"Authorization": {"Bearer " + revoked}}, 401, invalid, "invalid_token"},
		{"TokenInQuery", "/?api_key=" + token, nil, 400, badReq, "invalid_request"},
		{"TokenInQueryWithHeader", "/?x=" + token, http.Header{"Authorization": {"Bearer " + token}}, 400, badReq, "invalid_request"},
		{"AccessTokenParam", "/?access_token=x", http.Header{"Authorization": {"Bearer " + token}}, 400, badReq, "invalid_request"},
		{"HarmlessQuery", "/?limit=10&cursor=abc", http.Header{"Authorization": {"Bearer " + token}}, 204, "", ""},
		{"TwoHeaders", "/", http.Header{"Authorization": {"Bearer " + token}, "X-Api-Key": {token}}, 400, badReq, "invalid_request"},
		{"TwoAuthorization", "/", http.Header{"Authorization": {"Bearer " + token, "Bearer " + token}}, 400, badReq, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.target, nil)
			for name, values := range tc.header {
				req.Header[http.CanonicalHeaderKey(name)] = values
			}
			rec, p := serve(t, apikey.Middleware(f.v, apikey.MiddlewareOptions{AcceptLegacyBase64: true}), req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			if tc.status == 204 {
				if p == nil || p.KeyID != k.ID || p.UserID != f.userID {
					t.Errorf("principal = %+v, want key %s", p, k.ID)
				}
				return
			}
			if p != nil {
				t.Error("the handler ran for a refused request")
			}
			checkProblem(t, rec, tc.status, tc.code)
			if strings.Contains(rec.Body.String(), secret[:10]) {
				t.Error("the error body echoes the secret")
			}
		})
	}
}

func checkProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var pb problemBody
	if err := json.Unmarshal(rec.Body.Bytes(), &pb); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
	}
	if pb.Status != status || pb.Code != code || pb.Title == "" || pb.Detail == "" || pb.Type == "" {
		t.Errorf("problem = %+v, want status %d code %q", pb, status, code)
	}
}

func TestMiddlewareScopesAndAuthorize(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, reader := f.issue(t, apikey.IssueOptions{Scopes: []string{"favorites:read"}})
	_, writer := f.issue(t, apikey.IssueOptions{Scopes: []string{"favorites:read", "favorites:write"}})
	req := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/v1/favorites", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	write := apikey.Middleware(f.v, apikey.MiddlewareOptions{Scopes: []string{"favorites:write"}, Realm: "favorites"})

	rec, _ := serve(t, write, req(reader))
	if rec.Code != 403 {
		t.Fatalf("key without the scope: status %d, want 403", rec.Code)
	}
	if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="favorites", error="insufficient_scope", scope="favorites:write"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	checkProblem(t, rec, 403, "insufficient_scope")
	if rec, _ := serve(t, write, req(writer)); rec.Code != 204 {
		t.Errorf("key with the scope: status %d, want 204", rec.Code)
	}

	var entitled = map[string]error{}
	authz := apikey.Middleware(f.v, apikey.MiddlewareOptions{Authorize: func(ctx context.Context, p apikey.Principal) error {
		return entitled[p.Name]
	}})
	_, unpaid := f.issue(t, apikey.IssueOptions{Name: "unpaid"})
	_, broken := f.issue(t, apikey.IssueOptions{Name: "broken"})
	entitled["unpaid"] = apikey.Forbid("the subscription is not active")
	entitled["broken"] = errors.New("billing store down")

	rec, _ = serve(t, authz, req(unpaid))
	checkProblem(t, rec, 403, "forbidden")
	if !strings.Contains(rec.Body.String(), "the subscription is not active") {
		t.Errorf("403 body does not give the reason: %s", rec.Body)
	}
	rec, _ = serve(t, authz, req(broken))
	checkProblem(t, rec, 503, "unavailable")
	if strings.Contains(rec.Body.String(), "billing store down") {
		t.Error("an internal error leaked into the response")
	}
	if rec, _ := serve(t, authz, req(writer)); rec.Code != 204 {
		t.Errorf("authorized key: status %d, want 204", rec.Code)
	}
}

func TestMiddlewareStoreDown(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	f.fs.down.Store(true)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-API-Key", token)
	rec, p := serve(t, apikey.Middleware(f.v, apikey.MiddlewareOptions{}), r)
	if p != nil {
		t.Fatal("the handler ran while the key could not be verified")
	}
	checkProblem(t, rec, 503, "unavailable")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if strings.Contains(rec.Body.String(), "5432") {
		t.Error("the store error leaked into the response")
	}
}

func TestMiddlewareCustomErrorHandler(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, fmt.Sprintf("custom %d", apikey.StatusCode(err)), apikey.StatusCode(err))
	}})
	rec, _ := serve(t, mw, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 401 || !strings.HasPrefix(rec.Body.String(), "custom 401") || rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("custom handler: %d %q, WWW-Authenticate %q", rec.Code, rec.Body, rec.Header().Get("WWW-Authenticate"))
	}
}

func TestMiddlewarePanicsOnBadConfig(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	for name, fn := range map[string]func(){
		"NilVerifier": func() { apikey.Middleware(nil, apikey.MiddlewareOptions{}) },
		"BadScope":    func() { apikey.Middleware(f.v, apikey.MiddlewareOptions{Scopes: []string{"a b"}}) },
		"BadRealm":    func() { apikey.Middleware(f.v, apikey.MiddlewareOptions{Realm: `a"b`}) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "apikey: ") {
					t.Errorf("%s: recovered %v, want a panic starting with apikey: ", name, r)
				}
			}()
			fn()
		}()
	}
}

func TestStatusCode(t *testing.T) {
	for err, want := range map[error]int{
		nil: 200, apikey.ErrMissing: 401, apikey.ErrMalformed: 401, apikey.ErrInvalid: 401,
		apikey.ErrRevoked: 401, apikey.ErrExpired: 401, apikey.ErrInactive: 401,
		apikey.ErrInQuery: 400, apikey.ErrAmbiguous: 400, apikey.ErrInsufficientScope: 403,
		apikey.Forbid("x"): 403, apikey.ErrUnavailable: 503, errors.New("other"): 503,
		fmt.Errorf("wrapped: %w", apikey.ErrRevoked): 401,
	} {
		if got := apikey.StatusCode(err); got != want {
			t.Errorf("StatusCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// FuzzMiddleware feeds arbitrary credentials to the header extraction and
// verification: never a panic, only the documented statuses, and never the
// handler for anything but the one valid key.
func FuzzMiddleware(f *testing.F) {
	fx := newFixture(f, apikey.VerifierOptions{})
	_, token := fx.issue(f, apikey.IssueOptions{})
	mw := apikey.Middleware(fx.v, apikey.MiddlewareOptions{})
	secret := token[len(token)-apikey.SecretLen-apikey.CheckLen:]
	id := token[len("fav_test_") : len("fav_test_")+apikey.IDLen]
	for _, s := range []string{"Bearer " + token, "Bearer", "bearer  " + token + " ", "Basic abc",
		"Bearer " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret)), "Bearer Og==", "Bearer " + strings.Repeat("=", 300)} {
		f.Add(s, "", "")
		f.Add("", s[min(len(s), 7):], "")
	}
	f.Add("", "", "api_key=x")
	f.Add("", token, "q="+token)
	f.Add("", "", "%zz=%zz&&=")
	f.Fuzz(func(t *testing.T, authorization, xAPIKey, query string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = query
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		if xAPIKey != "" {
			r.Header.Set("X-API-Key", xAPIKey)
		}
		ran := false
		rec := httptest.NewRecorder()
		mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true })).ServeHTTP(rec, r)
		switch rec.Code {
		case 200:
			if !ran {
				t.Fatal("200 without running the handler")
			}
			if !carriesKey(authorization+" "+xAPIKey, token, id, secret[:apikey.SecretLen]) {
				t.Fatalf("accepted a credential that does not carry the key: %q %q", authorization, xAPIKey)
			}
		case 400, 401:
			if ran {
				t.Fatal("the handler ran for a refused request")
			}
		default:
			t.Fatalf("unexpected status %d", rec.Code)
		}
	})
}

// carriesKey reports whether a credential contains the token, or the seed's
// base64 "<id>:<secret>" form of it.
func carriesKey(cred, token, id, secret string) bool {
	if strings.Contains(cred, token) {
		return true
	}
	for _, field := range strings.Fields(cred) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(field); err == nil && strings.Contains(string(b), id) && strings.Contains(string(b), secret) {
				return true
			}
		}
	}
	return false
}

// lastChanged returns the token with its last character replaced by
// another one.
func lastChanged(token string) string {
	if strings.HasSuffix(token, "x") {
		return token[:len(token)-1] + "y"
	}
	return token[:len(token)-1] + "x"
}
