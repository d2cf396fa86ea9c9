package apikey_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/apikit/apikit/apikey"
)

// legacyOf returns the seed's base64("<id>:<secret>") form of a token,
// with the secret's check characters if withCheck.
func legacyOf(token string, withCheck bool, enc *base64.Encoding) string {
	tail := token[len(token)-apikey.IDLen-1-apikey.SecretLen-apikey.CheckLen:]
	id, secret := tail[:apikey.IDLen], tail[apikey.IDLen+1:]
	if !withCheck {
		secret = secret[:apikey.SecretLen]
	}
	return enc.EncodeToString([]byte(id + ":" + secret))
}

func TestLegacyFormIsOptIn(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	legacy := legacyOf(token, false, base64.StdEncoding)
	for _, tc := range []struct {
		name   string
		opts   apikey.MiddlewareOptions
		header string
		status int
	}{
		{"OffByDefault", apikey.MiddlewareOptions{}, "Bearer " + legacy, 401},
		{"CanonicalStillAccepted", apikey.MiddlewareOptions{}, "Bearer " + token, 204},
		{"OptedIn", apikey.MiddlewareOptions{AcceptLegacyBase64: true}, "Bearer " + legacy, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", tc.header)
			if rec, _ := serve(t, apikey.Middleware(f.v, tc.opts), r); rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
		})
	}
}

// The legacy form carries no prefix, so the stored key's prefix must pass
// VerifierOptions.Prefixes: a fav_test key is refused by a live-only
// verifier whichever form it is sent in.
func TestLegacyFormObeysPrefixes(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{Prefixes: []string{"fav_live"}})
	live := apikey.NewManager(f.fs, apikey.ManagerOptions{Prefix: "fav_live", Verifier: f.v, Now: f.clock.Now})
	_, liveTok, err := live.Issue(context.Background(), f.userID, apikey.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, testTok := f.issue(t, apikey.IssueOptions{}) // fav_test
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{AcceptLegacyBase64: true})
	for _, tc := range []struct {
		name, cred string
		status     int
	}{
		{"LiveCanonical", liveTok.Reveal(), 204},
		{"LiveLegacy", legacyOf(liveTok.Reveal(), false, base64.StdEncoding), 204},
		{"LiveLegacyWithCheck", legacyOf(liveTok.Reveal(), true, base64.RawURLEncoding), 204},
		{"TestCanonical", testTok, 401},
		{"TestLegacy", legacyOf(testTok, false, base64.StdEncoding), 401},
		{"TestLegacyWithCheck", legacyOf(testTok, true, base64.StdEncoding), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+tc.cred)
			rec, _ := serve(t, mw, r)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.status == 401 {
				checkProblem(t, rec, 401, "invalid_token")
			}
		})
	}
	testSecret := testTok[len(testTok)-apikey.SecretLen-apikey.CheckLen : len(testTok)-apikey.CheckLen]
	testID := testTok[len("fav_test_") : len("fav_test_")+apikey.IDLen]
	if _, err := f.v.VerifySecret(context.Background(), testID, testSecret); !errors.Is(err, apikey.ErrInvalid) {
		t.Errorf("VerifySecret(fav_test key on a live-only verifier) = %v, want ErrInvalid", err)
	}
}

// A legacy credential in the query string is refused with 400 like a
// canonical one, whether the legacy form is accepted or not, and even
// with a valid header next to it.
func TestLegacyFormRefusedInQuery(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	std := legacyOf(token, false, base64.StdEncoding)
	for _, opts := range []apikey.MiddlewareOptions{{}, {AcceptLegacyBase64: true}} {
		for name, query := range map[string]string{
			"Escaped":       "q=" + url.QueryEscape(std),
			"RawPlus":       "q=" + std, // '+' would read as a space
			"URLSafe":       "token=" + legacyOf(token, false, base64.RawURLEncoding),
			"WithCheck":     "x=1&auth=" + url.QueryEscape(legacyOf(token, true, base64.StdEncoding)),
			"CanonicalForm": "q=" + token,
		} {
			r := httptest.NewRequest("GET", "/?"+query, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			rec, p := serve(t, apikey.Middleware(f.v, opts), r)
			if rec.Code != 400 || p != nil {
				t.Errorf("legacy=%v %s: status %d, want 400", opts.AcceptLegacyBase64, name, rec.Code)
				continue
			}
			checkProblem(t, rec, 400, "invalid_request")
		}
	}
}

// FuzzLegacyBase64 feeds arbitrary bearer credentials to the legacy
// extractor and to a middleware that accepts the legacy form on a
// live-only verifier: never a panic; whatever the extractor returns is a
// well-formed id and secret that re-encode to an equivalent credential;
// only the valid live key is ever accepted, never the fav_test one.
func FuzzLegacyBase64(f *testing.F) {
	fx := newFixture(f, apikey.VerifierOptions{Prefixes: []string{"fav_live"}})
	live := apikey.NewManager(fx.fs, apikey.ManagerOptions{Prefix: "fav_live", Verifier: fx.v, Now: fx.clock.Now})
	_, liveTok, err := live.Issue(context.Background(), fx.userID, apikey.IssueOptions{})
	if err != nil {
		f.Fatal(err)
	}
	token := liveTok.Reveal()
	_, testTok := fx.issue(f, apikey.IssueOptions{})
	mw := apikey.Middleware(fx.v, apikey.MiddlewareOptions{AcceptLegacyBase64: true})
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		f.Add(legacyOf(token, false, enc))
		f.Add(legacyOf(token, true, enc))
		f.Add(legacyOf(testTok, true, enc))
	}
	f.Add(base64.StdEncoding.EncodeToString([]byte(" " + liveTok.ID + " : " + strings.Repeat("a", 32) + " ")))
	f.Add("Og==")
	f.Add(strings.Repeat("A", 300))
	f.Add(token)
	id := liveTok.ID
	secret := token[len(token)-apikey.SecretLen-apikey.CheckLen : len(token)-apikey.CheckLen]
	f.Fuzz(func(t *testing.T, cred string) {
		gotID, gotSecret, check, err := apikey.ParseLegacyBearer(cred)
		if err == nil {
			if len(gotID) != apikey.IDLen || len(gotSecret) != apikey.SecretLen || (check != "" && len(check) != apikey.CheckLen) {
				t.Fatalf("extracted id %q secret %q check %q", gotID, gotSecret, check)
			}
			again := base64.StdEncoding.EncodeToString([]byte(gotID + ":" + gotSecret + check))
			id2, secret2, check2, err := apikey.ParseLegacyBearer(again)
			if err != nil || id2 != gotID || secret2 != gotSecret || check2 != check {
				t.Fatalf("re-encoded credential parsed as %q %q %q %v", id2, secret2, check2, err)
			}
		} else if !errors.Is(err, apikey.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}

		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+cred)
		ran := false
		rec := httptest.NewRecorder()
		mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true })).ServeHTTP(rec, r)
		switch rec.Code {
		case 200:
			if !ran {
				t.Fatal("200 without running the handler")
			}
			if cred != token && !carriesKey(cred, token, id, secret) {
				t.Fatalf("accepted a credential that does not carry the live key: %q", cred)
			}
		case 401:
			if ran {
				t.Fatal("the handler ran for a refused request")
			}
		default:
			t.Fatalf("unexpected status %d", rec.Code)
		}
	})
}
