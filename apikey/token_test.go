package apikey_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"testing"

	"github.com/apikit/apikit/apikey"
)

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"fav", "sk_live", "fav_test", "a", "X9_y_z", strings.Repeat("p", apikey.MaxPrefixLen)} {
		tok, err := apikey.Generate(prefix)
		if err != nil {
			t.Fatalf("Generate(%q): %v", prefix, err)
		}
		full := tok.Reveal()
		if want := len(prefix) + 1 + apikey.IDLen + 1 + apikey.SecretLen + apikey.CheckLen; len(full) != want {
			t.Errorf("Generate(%q) token %d chars, want %d", prefix, len(full), want)
		}
		if !strings.HasPrefix(full, prefix+"_"+tok.ID+"_") {
			t.Errorf("token %q does not start with prefix and id", full)
		}
		got, err := apikey.Parse(full)
		if err != nil {
			t.Fatalf("Parse(Generate(%q)): %v", prefix, err)
		}
		if got.Prefix != prefix || got.ID != tok.ID || got.Reveal() != full {
			t.Errorf("Parse round trip: got %#v, want %#v", got, tok)
		}
	}
}

func TestGenerateIsRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok, err := apikey.Generate("fav")
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID] || seen[tok.Reveal()] {
			t.Fatalf("Generate repeated %v", tok)
		}
		seen[tok.ID], seen[tok.Reveal()] = true, true
	}
}

func TestGenerateRejectsBadPrefix(t *testing.T) {
	for _, p := range []string{"", "_fav", "fav_", "1fav", "fa-v", "fa v", "fäv", strings.Repeat("p", apikey.MaxPrefixLen+1)} {
		if _, err := apikey.Generate(p); err == nil {
			t.Errorf("Generate(%q) succeeded; want an error", p)
		}
	}
}

// sample is a well-formed token built by hand, so the table below can
// corrupt it one rule at a time.
func sample(t *testing.T) string {
	t.Helper()
	tok, err := apikey.Generate("sk_live")
	if err != nil {
		t.Fatal(err)
	}
	return tok.Reveal()
}

func TestParseRejects(t *testing.T) {
	good := sample(t)
	body, check := good[:len(good)-apikey.CheckLen], good[len(good)-apikey.CheckLen:]
	flip := func(s string, i int) string { // change one base62 character
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	idStart := len("sk_live_")
	for _, tc := range []struct {
		name, token string
	}{
		{"Empty", ""},
		{"TooShort", good[1:]},
		{"TooLong", "x" + strings.Repeat("p", apikey.MaxPrefixLen) + good[len("sk_live"):]},
		{"OneCharMore", good + "a"},
		{"NoPrefix", good[len("sk_live"):]},
		{"PrefixEndsInUnderscore", "sk__" + good[len("sk_live_"):]},
		{"PrefixStartsWithDigit", "9k_live" + good[len("sk_live"):]},
		{"BadCharInID", good[:idStart] + "-" + good[idStart+1:]},
		{"BadCharInSecret", body[:len(body)-1] + "/" + check},
		{"NonASCII", good[:idStart] + "é" + good[idStart+2:]},
		{"MissingSeparator", strings.Replace(good, "_", "x", 2)},
		{"ChecksumOfOtherToken", body + sample(t)[len(good)-apikey.CheckLen:]},
		{"TypoInID", flip(good, idStart+3)},
		{"TypoInSecret", flip(good, len(good)-apikey.CheckLen-5)},
		{"TypoInCheck", flip(good, len(good)-1)},
		{"TypoInPrefix", "sk_lave" + good[len("sk_live"):]},
		{"Whitespace", " " + good[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := apikey.Parse(tc.token)
			if !errors.Is(err, apikey.ErrMalformed) {
				t.Errorf("Parse(%q) = %v, %v; want ErrMalformed", tc.token, tok, err)
			}
		})
	}
}

func TestTokenRedaction(t *testing.T) {
	tok, err := apikey.Generate("fav_live")
	if err != nil {
		t.Fatal(err)
	}
	full := tok.Reveal()
	secret := full[len("fav_live_")+apikey.IDLen+1:]

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Debug("issued", "token", tok)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("issued", "token", tok)

	for _, out := range []string{
		tok.String(), fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q", tok, tok, tok, tok, tok), logs.String(),
	} {
		if strings.Contains(out, secret[:8]) {
			t.Errorf("output reveals the secret: %s", out)
		}
		if !strings.Contains(out, tok.ID) {
			t.Errorf("output does not show the key id: %s", out)
		}
	}
	if got, want := tok.String(), "fav_live_"+tok.ID+"_…"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestValidPrefix(t *testing.T) {
	for p, ok := range map[string]bool{
		"fav": true, "sk_live": true, "fav_test": true, "A1_b2": true,
		"": false, "_a": false, "a_": false, "1a": false, "a-b": false, "a b": false,
	} {
		if err := apikey.ValidPrefix(p); (err == nil) != ok {
			t.Errorf("ValidPrefix(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	tok, _ := apikey.Generate("fav_live")
	for _, s := range []string{tok.Reveal(), "", "fav_live_", "sk_test_AAAAAAAAAAAA_" + strings.Repeat("B", 38),
		"a_" + strings.Repeat("_", 52), strings.Repeat("\xff", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := apikey.Parse(s)
		if err != nil {
			if !errors.Is(err, apikey.ErrMalformed) {
				t.Fatalf("Parse(%q) error %v is not ErrMalformed", s, err)
			}
			return
		}
		// Anything Parse accepts is canonical: it prints back to itself
		// and has a valid prefix and base62 parts.
		if tok.Reveal() != s {
			t.Fatalf("Parse(%q).Reveal() = %q", s, tok.Reveal())
		}
		if apikey.ValidPrefix(tok.Prefix) != nil || len(tok.ID) != apikey.IDLen {
			t.Fatalf("Parse(%q) accepted prefix %q id %q", s, tok.Prefix, tok.ID)
		}
		if strings.Contains(tok.String(), s[len(s)-apikey.CheckLen-apikey.SecretLen:]) {
			t.Fatalf("String() of %q shows the secret", s)
		}
	})
}

func TestCRCMatchesStandardLibrary(t *testing.T) {
	for _, s := range []string{"", "a", "fav_live_4tQ2x9LmZpB7_", strings.Repeat("xyz", 40), sample(t)} {
		if got, want := apikey.CRCString(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("CRC(%q) = %08x, want %08x", s, got, want)
		}
	}
}
