package apikey_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/apikit/apikit/apikey"
)

// FuzzMetadata: metadata is refused with ErrInvalidOptions, or kept as a
// compact JSON object within the size cap.
func FuzzMetadata(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{ "a" : [1, {"b": null}] }`, `null`, ``, `[]`, `"x"`, `{"a":`, `{} {}`, "{\"\xff\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := apikey.NormalizeMetadata(b)
		if err != nil {
			if !errors.Is(err, apikey.ErrInvalidOptions) {
				t.Fatalf("error %v does not wrap ErrInvalidOptions", err)
			}
			return
		}
		if m == nil {
			return
		}
		var obj map[string]any
		if len(m) > apikey.MaxMetadataLen || json.Unmarshal(m, &obj) != nil || obj == nil {
			t.Fatalf("accepted %q as %q", b, m)
		}
	})
}

// FuzzParseCIDRs: a list is refused, or yields masked, valid prefixes
// that are not the whole address space.
func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"203.0.113.0/24, 2001:db8::/48", "10.0.0.1", "::ffff:10.0.0.0/104", "0.0.0.0/0", "fe80::1%eth0/64", "a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := apikey.ParseCIDRs(s)
		if err != nil {
			return
		}
		if len(ps) > apikey.MaxCIDRs {
			t.Fatalf("%d prefixes", len(ps))
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Bits() == 0 || p.Addr().Is4In6() {
				t.Fatalf("ParseCIDRs(%q) gave %v", s, p)
			}
		}
	})
}
