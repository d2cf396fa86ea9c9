package secretscan

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/problem"
)

// Headers GitHub signs its requests with.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// Labels of GitHub's feedback format.
const (
	TruePositive  = "true_positive"
	FalsePositive = "false_positive"
)

// Limits on what a request may hold.
const (
	// DefaultMaxBodyBytes is the default [Options.MaxBodyBytes].
	DefaultMaxBodyBytes = 1 << 20
	// MaxReports is the most reports one request may carry.
	MaxReports = 1000
	// maxSignatureLen bounds the signature header: an ASN.1 P-256
	// signature is at most 72 bytes, 96 in base64.
	maxSignatureLen = 256
	maxKeyIDLen     = 256
	// maxTokenLen bounds a reported token: longer ones cannot be ours and
	// are answered without a lookup.
	maxTokenLen = 256
	// respondTimeout bounds the handling of one request's reports.
	respondTimeout = 30 * time.Second
)

// Options configures a [Handler]. Responder is required; the zero value of
// the others is a safe default.
type Options struct {
	// Responder revokes leaked keys, notifies their owners and audits
	// (required). Build it with the Manager the application uses, so that
	// its Verifier drops the key at once and its OnChange hook tells the
	// other instances.
	Responder *apikey.LeakResponder

	// KeysURL is where GitHub's public keys are fetched from (default
	// [DefaultKeysURL]), in the format GitHub publishes them:
	// {"public_keys":[{"key_identifier":"…","key":"-----BEGIN PUBLIC KEY-----…","is_current":true}]}.
	KeysURL string

	// Client fetches the keys (default: an http.Client with a 10-second
	// timeout).
	Client *http.Client

	// KeysTTL is how long fetched keys are used before they are fetched
	// again (default 24 hours); a fetch that fails keeps the old keys.
	KeysTTL time.Duration

	// MinRefreshInterval is the least time between two fetches of the
	// keys (default 1 minute): a request signed with a key id that is
	// not known causes a fetch only if none was made within it, so that
	// made-up key ids cannot make the server flood the key server.
	MinRefreshInterval time.Duration

	// MaxBodyBytes bounds the request body (default
	// [DefaultMaxBodyBytes]); larger requests are refused with 413.
	MaxBodyBytes int64

	// Now returns the current time (default time.Now).
	Now func() time.Time

	// Logger receives refused requests and failures (default: discard).
	// Tokens are never logged.
	Logger *slog.Logger
}

// Handler is the http.Handler of the secret scanning endpoint; see the
// package documentation. It is safe for concurrent use.
type Handler struct {
	opts  Options
	keys  *keyCache
	log   *slog.Logger
	stats counters
}

type counters struct {
	refused, reports, truePositives, revoked, failed atomic.Uint64
}

// Stats is a snapshot of a Handler's counters.
type Stats struct {
	Refused       uint64 // requests refused: unsigned, mis-signed, malformed, too large
	Reports       uint64 // tokens reported in accepted requests
	TruePositives uint64 // of them, keys of ours
	Revoked       uint64 // of them, live keys revoked
	Failed        uint64 // reports that could not be handled (answered 503)
	KeyFetches    int    // fetches of GitHub's keys attempted
}

// Stats returns the Handler's counters.
func (h *Handler) Stats() Stats {
	h.keys.fetchMu.Lock()
	fetches := h.keys.fetches
	h.keys.fetchMu.Unlock()
	return Stats{Refused: h.stats.refused.Load(), Reports: h.stats.reports.Load(),
		TruePositives: h.stats.truePositives.Load(), Revoked: h.stats.revoked.Load(),
		Failed: h.stats.failed.Load(), KeyFetches: fetches}
}

// New returns the Handler. It panics if opts.Responder is nil or
// opts.KeysURL is not an absolute http(s) URL.
func New(opts Options) *Handler {
	if opts.Responder == nil {
		panic("secretscan: New without a Responder")
	}
	if opts.KeysURL == "" {
		opts.KeysURL = DefaultKeysURL
	}
	if !strings.HasPrefix(opts.KeysURL, "https://") && !strings.HasPrefix(opts.KeysURL, "http://") {
		panic("secretscan: KeysURL must be an http(s) URL")
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.KeysTTL <= 0 {
		opts.KeysTTL = 24 * time.Hour
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = time.Minute
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, log: log, keys: &keyCache{url: opts.KeysURL, client: opts.Client,
		ttl: opts.KeysTTL, minInterval: opts.MinRefreshInterval, now: opts.Now}}
}

// Report is one token GitHub found.
type Report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Feedback is GitHub's feedback format for one report.
type Feedback struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// Errors a request is refused with.
var (
	errUnsigned  = errors.New("secretscan: request not signed")
	errSignature = errors.New("secretscan: bad signature")
	errBody      = errors.New("secretscan: body is not a JSON array of reports")
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST.", nil)
		return
	}
	keyID := r.Header.Get(HeaderKeyID)
	sig, err := parseSignature(r.Header.Get(HeaderSignature))
	if keyID == "" || len(keyID) > maxKeyIDLen || err != nil {
		h.refuse(w, r, http.StatusUnauthorized, "invalid_signature", "The request must carry GitHub's signature headers.", wrapUnsigned(err))
		return
	}
	// The key first: a request naming a key that is not GitHub's is
	// refused before its body is read.
	pub, err := h.keys.key(r.Context(), keyID)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "secretscan: fetching GitHub's keys failed", slog.Any("error", err))
	}
	if pub == nil {
		if err != nil { // cannot tell whether the key is GitHub's: let GitHub retry
			h.refuse(w, r, http.StatusServiceUnavailable, "unavailable", "The signature cannot be checked right now.", err)
			return
		}
		h.refuse(w, r, http.StatusUnauthorized, "invalid_signature", "The request is not signed by a known GitHub key.", fmt.Errorf("%w: unknown key id %.64q", errSignature, keyID))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, "too_large", "The request body is too large.", err)
			return
		}
		h.refuse(w, r, http.StatusBadRequest, "bad_request", "The request body could not be read.", err)
		return
	}
	if !verify(pub, body, sig) {
		h.refuse(w, r, http.StatusUnauthorized, "invalid_signature", "The signature does not match the request.", errSignature)
		return
	}
	reports, err := parseReports(body)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_body", "The body must be a JSON array of {token, type, url, source}.", err)
		return
	}
	h.respond(w, r, reports)
}

// respond handles the reports of a signed request.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, reports []Report) {
	// A revocation must finish even if GitHub hangs up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), respondTimeout)
	defer cancel()
	out := make([]Feedback, len(reports))
	failed := 0
	for i, rep := range reports {
		h.stats.reports.Add(1)
		out[i] = Feedback{TokenRaw: rep.Token, TokenType: rep.Type, Label: FalsePositive}
		if len(rep.Token) > maxTokenLen {
			continue
		}
		res, err := h.opts.Responder.Respond(ctx, apikey.Leak{Token: rep.Token, URL: rep.URL, Source: rep.Source, Reporter: apikey.ActorGitHub})
		if err != nil {
			failed++
			h.stats.failed.Add(1)
			h.log.LogAttrs(ctx, slog.LevelError, "secretscan: handling a leaked key failed",
				slog.String("key_id", res.KeyID), slog.Any("error", err))
		}
		if res.Ours {
			out[i].Label = TruePositive
			h.stats.truePositives.Add(1)
			if res.Live {
				h.stats.revoked.Add(1)
			}
			h.log.LogAttrs(ctx, slog.LevelWarn, "secretscan: key reported leaked",
				slog.String("key_id", res.KeyID), slog.Int64("user_id", res.UserID),
				slog.Bool("was_live", res.Live), slog.String("url", logURL(rep.URL)))
		}
	}
	if failed > 0 {
		w.Header().Set("Retry-After", "60")
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "unavailable",
			"Some reports could not be handled; deliver the request again."))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, code, detail string, err error) {
	h.stats.refused.Add(1)
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "secretscan: request refused",
		slog.Int("status", status), slog.String("remote", r.RemoteAddr), slog.Any("error", err))
	problem.Write(w, problem.New(status, code, detail))
}

// wrapUnsigned is the logged error of a request without a usable
// signature: errUnsigned, and why, on one line.
func wrapUnsigned(err error) error {
	if err == nil {
		return errUnsigned
	}
	return fmt.Errorf("%w: %w", errUnsigned, err)
}

// logURL is what the log says of the place a token was found: its scheme,
// host and path, with any token in them redacted. The rest (query,
// fragment, user information, or text that is no URL at all) may hold the
// token itself, which never goes to a log; the owner's mail carries the
// whole URL.
func logURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(not logged)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: redactTokens(u.Host), Path: redactTokens(u.Path)}).String()
}

// redactTokens replaces each word of s (maximal run of ASCII letters,
// digits and '_', the alphabet of a token) that is a token by REDACTED, so
// that a token is found wherever it hides: "/raw/TOKEN.txt", "a-TOKEN-b".
func redactTokens(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		if j == i {
			b.WriteByte(s[i])
			i++
			continue
		}
		if _, err := apikey.Parse(s[i:j]); err == nil {
			b.WriteString("REDACTED")
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// parseSignature decodes the signature header: standard base64 (padded or
// not) of an ASN.1 DER ECDSA signature. It checks the size and encoding
// only; the signature itself is checked by verify.
func parseSignature(h string) ([]byte, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, errors.New("no signature")
	}
	if len(h) > maxSignatureLen {
		return nil, errors.New("signature too long")
	}
	sig, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		sig, err = base64.RawStdEncoding.DecodeString(h)
	}
	if err != nil || len(sig) < 8 || sig[0] != 0x30 {
		return nil, errors.New("signature is not base64 of an ASN.1 ECDSA signature")
	}
	return sig, nil
}

// verify checks sig over the SHA-256 of body.
func verify(pub *ecdsa.PublicKey, body, sig []byte) bool {
	sum := sha256.Sum256(body)
	return ecdsa.VerifyASN1(pub, sum[:], sig)
}

// parseReports parses the body: a JSON array of at most MaxReports
// reports, each an object; unknown fields are ignored, as GitHub may add
// some.
func parseReports(body []byte) ([]Report, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", errBody, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: not an array", errBody)
	}
	if len(raw) > MaxReports {
		return nil, fmt.Errorf("%w: more than %d reports", errBody, MaxReports)
	}
	out := make([]Report, len(raw))
	for i, m := range raw {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%w: report %d is not an object", errBody, i)
		}
		if err := json.Unmarshal(m, &out[i]); err != nil {
			return nil, fmt.Errorf("%w: report %d: %w", errBody, i, err)
		}
	}
	return out, nil
}

// TokenPattern returns the regular expression to register with GitHub for
// keys with the given prefix, such as
// "fav_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}" for "fav_live". It panics if
// a prefix is not valid (see [apikey.ValidPrefix]).
func TokenPattern(prefix string) string {
	if err := apikey.ValidPrefix(prefix); err != nil {
		panic(err.Error())
	}
	return fmt.Sprintf("%s_[0-9A-Za-z]{%d}_[0-9A-Za-z]{%d}", regexp.QuoteMeta(prefix), apikey.IDLen, apikey.SecretLen+apikey.CheckLen)
}
