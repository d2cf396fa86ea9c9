package magiclink

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

const (
	// codePath is where the "check your email" page posts a sign-in code.
	codePath = "/login/code"
	// codeDigits is the length of a sign-in code.
	codeDigits = 8
	// MaxCodeAttempts is how many codes may be tried for one requested
	// sign-in; after that the sign-in is void, its link included.
	MaxCodeAttempts = 5
)

var codeSpace = big.NewInt(100_000_000) // 10^codeDigits

// newCode returns a uniformly random 8-digit code.
func newCode() string {
	n, err := rand.Int(rand.Reader, codeSpace)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return fmt.Sprintf("%0*d", codeDigits, n)
}

// normalizeCode returns the code with the spaces and hyphens people type
// removed, and whether it is then exactly 8 ASCII digits.
func normalizeCode(raw string) (string, bool) {
	if len(raw) > 4*codeDigits {
		return "", false
	}
	var b strings.Builder
	for _, c := range raw {
		switch {
		case c >= '0' && c <= '9':
			b.WriteRune(c)
		case c == ' ' || c == '-' || c == '\t':
		default:
			return "", false
		}
	}
	return b.String(), b.Len() == codeDigits
}

// loginCookieName is the name of the cookie that binds a sign-in code to
// the browser that asked for it.
func (s *Service) loginCookieName() string {
	if s.opts.InsecureCookies {
		return "login"
	}
	return "__Host-login"
}

// loginCookie is the asking browser's nonce cookie, for ttl (TokenTTL);
// ttl < 0 clears it.
func (s *Service) loginCookie(value string, ttl time.Duration) *http.Cookie {
	maxAge := int(ttl / time.Second)
	if ttl < 0 {
		maxAge = -1
	}
	return &http.Cookie{
		Name: s.loginCookieName(), Value: value, Path: "/", MaxAge: maxAge,
		Secure: !s.opts.InsecureCookies, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	}
}

func invalidCode() *Error { return refusal(ErrInvalidCode, "") }

func voidCode() *Error {
	return refusal(ErrInvalidCode, "Too many wrong codes: this sign-in is void, its link too. Ask for a new one.")
}

// CodeHandler handles POST /login/code, the form of the "check your
// email" page: it reads "code" (a form field, or {"code": "…"} in JSON)
// and, if the request carries the login cookie that POST /login gave the
// browser which asked, and the code is the one emailed for that request,
// spends the sign-in's token (so its link no longer works, and a used
// link leaves the code useless), then signs in as following the link
// does ([Service.VerifyHandler]): the address is confirmed, a first proof
// ends earlier sessions, and a new session starts. Browsers are
// redirected to AfterLoginPath with 303; JSON clients get 200 and
// {"user_id", "email"}.
//
// A code without the cookie, from another browser, is refused like a
// wrong one (400, [ErrInvalidCode]). Each requested sign-in allows
// [MaxCodeAttempts] tries, counted atomically by the store; after the
// last wrong one the sign-in is void. Every failure also counts against
// the client's [Options.VerifyLimiter] budget, as failed links do (429
// when exhausted). Codes are compared in constant time (as hashes) and
// never logged. Cross-origin POSTs are refused (403). [Service.Register]
// and [Service.Handler] mount it.
func (s *Service) CodeHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			s.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		s.verifyCode(w, r)
	})
}

func (s *Service) verifyCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client := s.opts.ClientKey(r)
	if wait := s.blocks.blocked(client, s.opts.Now()); wait > 0 {
		s.stats.verifyLimited.Add(1)
		s.refuse(w, r, verifyLimited().after(wait))
		return
	}
	raw, err := readField(w, r, "code")
	if err != nil {
		s.verifyFailed(w, r, client, badBody(err, "a code"))
		return
	}
	code, ok := normalizeCode(raw)
	c, cerr := r.Cookie(s.loginCookieName())
	if !ok || cerr != nil || !wellFormed(c.Value) {
		s.verifyFailed(w, r, client, invalidCode())
		return
	}
	now := s.opts.Now()
	email, ok, void, err := s.store.ConsumeLoginCode(ctx, hashSecret(c.Value), hashSecret(code), MaxCodeAttempts, now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: consuming a sign-in code", "err", err)
		s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Try again shortly."))
		return
	}
	if !ok {
		e := invalidCode()
		if void {
			s.logger.Info("magiclink: a sign-in is void after too many wrong codes")
			http.SetCookie(w, s.loginCookie("", -1))
			e = voidCode()
		}
		s.verifyFailed(w, r, client, e)
		return
	}
	http.SetCookie(w, s.loginCookie("", -1))
	s.signedIn(w, r, client, email, "code", invalidCode)
}
