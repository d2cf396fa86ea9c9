package billing

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/emailaddr"
)

func TestSignatureTime(t *testing.T) {
	for header, want := range map[string][2]int64{
		"t=1700000000,v1=abc":              {1700000000, 1700000000},
		"v1=abc,t=1700000000,v0=def":       {1700000000, 1700000000},
		"t=1800000000,v1=abc,t=1700000000": {1700000000, 1800000000}, // the earliest and latest of several
	} {
		if lo, hi, ok := signatureTime(header); !ok || lo.Unix() != want[0] || hi.Unix() != want[1] {
			t.Errorf("signatureTime(%q) = %v, %v, %v; want %d", header, lo, hi, ok, want)
		}
	}
	for _, header := range []string{"", "v1=abc", "t=,v1=abc", "t=12x", "t=1,t=x"} {
		if _, _, ok := signatureTime(header); ok {
			t.Errorf("signatureTime(%q) accepted", header)
		}
	}
}

// FuzzSignatureTime: the Stripe-Signature parser never panics, and what it
// accepts lies between the smallest and the largest t= item of the header.
func FuzzSignatureTime(f *testing.F) {
	f.Add("t=1700000000,v1=abc")
	f.Add("t=-1,t=9223372036854775807")
	f.Add("t=1,,=,t")
	f.Add(strings.Repeat("t=1,", 100))
	f.Fuzz(func(t *testing.T, header string) {
		lo, hi, ok := signatureTime(header)
		if !ok {
			return
		}
		for _, item := range strings.Split(header, ",") {
			if v, found := strings.CutPrefix(item, "t="); found {
				if n, err := strconv.ParseInt(v, 10, 64); err != nil || n > hi.Unix() || n < lo.Unix() {
					t.Fatalf("signatureTime(%q) = %d, %d; item %q", header, lo.Unix(), hi.Unix(), item)
				}
			}
		}
	})
}

// TestErrorTable: every sentinel has its own row, and wrapped errors keep
// their row; nothing wrapped leaks into the public message.
func TestErrorTable(t *testing.T) {
	want := map[error]int{
		ErrInvalidEmail: 400, ErrBadRequest: 400, ErrInvalidSignature: 400, ErrCrossOrigin: 403,
		ErrRateLimited: 429, ErrNotSignedIn: 401, ErrNoCustomer: 404, ErrCheckoutInvalid: 410,
		ErrStripe: 502, ErrUnavailable: 503,
	}
	codes := map[string]bool{}
	for err, status := range want {
		wrapped := fmt.Errorf("%w: secret sql detail", err)
		if StatusCode(wrapped) != status || strings.Contains(PublicMessage(wrapped), "secret") {
			t.Errorf("%v: status %d, message %q", err, StatusCode(wrapped), PublicMessage(wrapped))
		}
		codes[ErrorCode(err)] = true
	}
	if len(codes) != len(want) {
		t.Errorf("codes %v are not one per error", codes)
	}
	addr := fmt.Errorf("%w: %w", ErrInvalidEmail, &emailaddr.Error{Reason: "no domain"})
	if StatusCode(addr) != http.StatusBadRequest || !strings.Contains(PublicMessage(addr), "no domain") {
		t.Errorf("address error: %d %q", StatusCode(addr), PublicMessage(addr))
	}
	if StatusCode(errors.New("x")) != 503 || StatusCode(nil) != 200 {
		t.Error("unknown errors are not 503, or nil not 200")
	}
}
