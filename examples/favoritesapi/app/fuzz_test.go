package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apikit/apikit/apikey"
)

// FuzzDecodeCursor feeds arbitrary cursors, as clients send them: they
// never panic, and every cursor the API hands out decodes to its position.
func FuzzDecodeCursor(f *testing.F) {
	first := cursorPos{At: time.UnixMicro(1), ID: "AAAAAAAAAAAAAAAA"}
	late := cursorPos{At: time.UnixMicro(1 << 62), ID: "zzzzzzzzzzzzzzzz"}
	for _, s := range []string{"", "c2.", "c1.AAAAAAAAAAE", encodeCursor(first), encodeCursor(late), "c2.AAAA", "c2.////", "c2.AAAAAAAAAAE=", strings.Repeat("c2.", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := decodeCursor(s)
		if err != nil {
			return
		}
		if pos.At.UnixMicro() <= 0 || !validFavoriteID(pos.ID) {
			t.Fatalf("decodeCursor(%q) = %+v, want a positive time and a favorite id, or an error", s, pos)
		}
		if got, err := decodeCursor(encodeCursor(pos)); err != nil || got != pos {
			t.Fatalf("cursor of %+v does not round trip: %+v, %v", pos, got, err)
		}
	})
}

// FuzzFavoriteBody feeds arbitrary bodies to the decoding and validation
// of POST /v1/favorites: never a panic, a 4xx problem for anything
// unusable, and only input within the documented limits accepted.
func FuzzFavoriteBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"Go spec","url":"https://go.dev/ref/spec","tags":["go"]}`,
		`{"name":"","url":"x"}`, `{"name":1}`, `[]`, `null`, `{"name":"a","url":"https://a","tags":null}`,
		`{"name":"a","url":"https://a"} x`, `{"name":"\u0000","url":"http://a"}`, `{"tags":["` + strings.Repeat("t", 60) + `"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/favorites", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var in favoriteInput
		if !decodeJSON(w, r, &in) {
			if w.Code < 400 || w.Code > 499 || w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("unusable body answered %d %q", w.Code, w.Header().Get("Content-Type"))
			}
			return
		}
		if len(validateFavorite(in)) > 0 {
			return
		}
		name := strings.TrimSpace(*in.Name)
		if n := utf8.RuneCountInString(name); n < 1 || n > maxNameLen || !utf8.ValidString(name) {
			t.Fatalf("accepted name %q", name)
		}
		if !validURL(*in.URL) || !(strings.HasPrefix(*in.URL, "http://") || strings.HasPrefix(strings.ToLower(*in.URL), "https://") || strings.HasPrefix(strings.ToLower(*in.URL), "http://")) {
			t.Fatalf("accepted url %q", *in.URL)
		}
		if len(in.Tags) > maxTags {
			t.Fatalf("accepted %d tags", len(in.Tags))
		}
		for _, tag := range in.Tags {
			if n := utf8.RuneCountInString(tag); n < 1 || n > maxTagLen {
				t.Fatalf("accepted tag %q", tag)
			}
		}
	})
}

// FuzzKeyForm feeds arbitrary new-key forms (lifetime, metadata, tags,
// networks) to their parsing: never a panic, and what is accepted is
// within the dashboard's choices and apikey's limits, or refused by
// Issue's own checks (the form is read twice, here and by apikey).
func FuzzKeyForm(f *testing.F) {
	f.Add("30", `{"customer":"acme"}`, "ci, team:billing", "10.0.0.0/8, 2001:db8::/48 198.51.100.7")
	f.Add("", "", "", "")
	f.Add("7", `[1]`, "-x", "0.0.0.0/0")
	f.Add("365", `{"a":`, strings.Repeat("t ", 40), "10.0.0.0/33")
	f.Fuzz(func(t *testing.T, expires, metadata, tags, networks string) {
		opts, msg := keyOptions(url.Values{"expires": {expires}, "metadata": {metadata}, "tags": {tags}, "networks": {networks}})
		if msg != "" {
			if !utf8.ValidString(msg) {
				t.Fatalf("message %q is not UTF-8", msg)
			}
			return
		}
		switch opts.ExpiresIn {
		case 0, 30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour:
		default:
			t.Fatalf("expires %q accepted as %v", expires, opts.ExpiresIn)
		}
		if len(opts.Metadata) > 2*apikey.MaxMetadataLen || len(opts.Tags) > apikey.MaxTags {
			t.Fatalf("accepted %d bytes of metadata, %d tags", len(opts.Metadata), len(opts.Tags))
		}
		if len(opts.Metadata) > 0 && (!json.Valid(opts.Metadata) || opts.Metadata[0] != '{') {
			t.Fatalf("accepted metadata %q", opts.Metadata)
		}
		for _, p := range opts.AllowedCIDRs {
			if !p.IsValid() {
				t.Fatalf("accepted network %v", p)
			}
		}
	})
}

// FuzzRetention: AUDIT_RETENTION is a day or more, or an error.
func FuzzRetention(f *testing.F) {
	for _, s := range []string{"365d", "90d", "8760h", "1h", "0d", "-5d", "d", "999999999999d", "1.5d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseRetention(s); err == nil && d < 24*time.Hour {
			t.Fatalf("parseRetention(%q) = %v", s, d)
		}
	})
}
