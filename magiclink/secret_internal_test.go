package magiclink

import (
	"encoding/base64"
	"strings"
	"testing"
)

// wellFormed accepts exactly the 43-character strings that decode as
// base64url without padding (line breaks, which the decoder skips, are
// not part of a secret).
func FuzzWellFormed(f *testing.F) {
	secret, _ := newSecret()
	for _, s := range []string{secret, "", strings.Repeat("A", 43), strings.Repeat("A", 42) + "=",
		strings.Repeat("A", 42) + "\n", strings.Repeat("+", 43), strings.Repeat("_", 44)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := base64.RawURLEncoding.DecodeString(s)
		want := len(s) == encodedSecretLen && err == nil && !strings.ContainsAny(s, "\r\n")
		if got := wellFormed(s); got != want {
			t.Errorf("wellFormed(%q) = %v, want %v", s, got, want)
		}
	})
}
