package secretscan

import (
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzParseReports: any body either parses into at most MaxReports
// reports that survive a JSON round trip, or is refused with errBody;
// never a panic.
func FuzzParseReports(f *testing.F) {
	for _, s := range []string{
		`[{"token":"fav_live_4tQ2x9LmZpB7_Rk2hX8wVd0qL3mNpT7yBc5zGj1sFa9eU0Qp2Lm","type":"fav_live_api_key","url":"https://github.com/a/b","source":"content"}]`,
		`[]`, `null`, `{}`, `[1]`, `[{"token":1}]`, `[{"token":"a","extra":{"x":[1,2]}}]`, `[{}, {"url":"\u0000"}]`, `[`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reps, err := parseReports(body)
		if err != nil {
			if reps != nil {
				t.Fatal("reports returned with an error")
			}
			return
		}
		if len(reps) > MaxReports {
			t.Fatalf("%d reports", len(reps))
		}
		b, err := json.Marshal(reps)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseReports(b)
		if err != nil || len(again) != len(reps) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseSignature: a header is refused, or decodes to a bounded
// ASN.1-looking signature; never a panic.
func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{
		"MEUCIFFlz7Ag5Rl8Jt5Z1rQAAJzLk8VxTuy6ww6zlKgVOtLVAiEA0cXLyjaUyJ7yQtPKkDUF6GOLVWY8TsSn6G8lLAbgjmw=",
		"", " ", "====", "MEUC", "!!!", "MA==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := parseSignature(h)
		if err != nil {
			return
		}
		if len(sig) == 0 || sig[0] != 0x30 || len(sig) > maxSignatureLen {
			t.Fatalf("accepted %q as %x", h, sig)
		}
		if base64.StdEncoding.EncodeToString(sig) == "" {
			t.Fatal("empty")
		}
	})
}

// FuzzParseKeys: a key document is refused or yields P-256 keys only.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(`{"public_keys":[{"key_identifier":"a","key":"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP\nHzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==\n-----END PUBLIC KEY-----","is_current":true}]}`))
	f.Add([]byte(`{"public_keys":[]}`))
	f.Add([]byte(`{"public_keys":[{"key":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeys(b)
		if err == nil && len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		for id, k := range keys {
			if id == "" || k == nil || k.Curve.Params().Name != "P-256" {
				t.Fatalf("key %q: %v", id, k)
			}
		}
	})
}
