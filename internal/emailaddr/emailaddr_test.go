package emailaddr_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/emailaddr"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ada@example.com", "ada@example.com"},
		{"  Ada.Lovelace@Example.COM \t", "ada.lovelace@example.com"},
		{"ada+favorites@mail.example.co.uk", "ada+favorites@mail.example.co.uk"},
		{"o'brien@example.ie", "o'brien@example.ie"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
	} {
		got, err := emailaddr.Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"   ",
		"ada",
		"ada@",
		"@example.com",
		"ada@example",                       // no dot
		"ada@@example.com",                  // two @
		"ada@example..com",                  // empty label
		".ada@example.com",                  // leading dot
		"ada.@example.com",                  // trailing dot
		"a..da@example.com",                 // double dot
		"ada lovelace@example.com",          // space
		"ada@example.com\r\nBcc: x@evil.io", // header injection
		"ada@example.com\nbcc:x@evil.io",
		"ada\r@example.com",
		"Ada <ada@example.com>", // display name
		"\"ada\"@example.com",   // quoted local part
		"ada(comment)@example.com",
		"ada@[127.0.0.1]",     // IP literal
		"ada@127.0.0.1",       // numeric TLD
		"ada@-example.com",    // hyphen at label start
		"ada@example-.com",    // hyphen at label end
		"ada@exa_mple.com",    // underscore in domain
		"аda@example.com",     // Cyrillic а
		"ada@exаmple.com",     // Cyrillic а in domain
		"ａda@example.com",     // fullwidth a
		"ada@bücher.example",  // raw IDN
		"ada\x00@example.com", // NUL
		strings.Repeat("a", 65) + "@example.com",
		"a@" + strings.Repeat("b", 64) + ".com",
		"a@" + strings.Repeat("abcdefghi.", 25) + "com", // over 254
	} {
		got, err := emailaddr.Normalize(in)
		if err == nil {
			t.Errorf("Normalize(%q) = %q, nil; want an error", in, got)
			continue
		}
		if !errors.Is(err, emailaddr.ErrInvalid) {
			t.Errorf("Normalize(%q) error %v does not wrap ErrInvalid", in, err)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"ada@example.com", "Ada <ada@example.com>", "a@b.c\r\n", "\"a b\"@example.com",
		"ada@[::1]", "аda@example.com", "x@xn--bcher-kva.example", "a.b+c@d-e.f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := emailaddr.Normalize(s)
		if err != nil {
			if !errors.Is(err, emailaddr.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(got) > emailaddr.MaxLen || strings.ContainsAny(got, "\r\n <>\"(),;:\\[]") || got != strings.ToLower(got) {
			t.Fatalf("Normalize(%q) = %q: not a safe, canonical address", s, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x21 || got[i] > 0x7E {
				t.Fatalf("Normalize(%q) = %q: non-ASCII or control byte", s, got)
			}
		}
		if again, err := emailaddr.Normalize(got); err != nil || again != got {
			t.Fatalf("Normalize is not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
	})
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"ada@example.org":   "a•••@example.org",
		"n@example.org":     "n•••@example.org",
		"@example.org":      "•••",
		"nobody":            "•••",
		"\xffx@example.org": "••••@example.org",
	} {
		if got := emailaddr.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}
