package apikey_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

// Key names refuse characters that make a name display as something it is
// not: controls, bidi overrides and isolates, zero-width and other format
// characters, line separators. Issue and Rename apply the same rule.
func TestKeyNames(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	k, _ := f.issue(t, apikey.IssueOptions{Name: "before"})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"production server", true},
		{"  trimmed  ", true},
		{"Grüße, 東京 🚀", true},
		{"", true},
		{"line\nbreak", false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"c1\u0085c1", false},
		{"exe\u202Etxt.pdf", false},        // RIGHT-TO-LEFT OVERRIDE
		{"left\u202Aembedding", false},     // LEFT-TO-RIGHT EMBEDDING
		{"isolate\u2066x\u2069", false},    // LEFT-TO-RIGHT ISOLATE, POP DIRECTIONAL ISOLATE
		{"first\u2068strong", false},       // FIRST STRONG ISOLATE
		{"zero\u200Bwidth", false},         // ZERO WIDTH SPACE
		{"joiner\u200Dhere", false},        // ZERO WIDTH JOINER
		{"mark\u200Fhere", false},          // RIGHT-TO-LEFT MARK
		{"\uFEFFbom", false},               // ZERO WIDTH NO-BREAK SPACE
		{"soft\u00ADhyphen", false},        // SOFT HYPHEN
		{"word\u2060joiner", false},        // WORD JOINER
		{"tag\U000E0041", false},           // TAG LATIN CAPITAL LETTER A
		{"line\u2028separator", false},     // LINE SEPARATOR
		{"para\u2029separator", false},     // PARAGRAPH SEPARATOR
		{string([]byte{0xff, 'a'}), false}, // not UTF-8
		{strings.Repeat("é", apikey.MaxNameLen), true},
		{strings.Repeat("é", apikey.MaxNameLen+1), false},
	} {
		_, _, issueErr := f.m.Issue(ctx, f.userID, apikey.IssueOptions{Name: tc.name})
		renameErr := f.m.Rename(ctx, k.ID, tc.name)
		for what, err := range map[string]error{"Issue": issueErr, "Rename": renameErr} {
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, apikey.ErrInvalidOptions) {
				t.Errorf("%s(name %+q) = %v, want ok=%v", what, tc.name, err, tc.ok)
			}
		}
	}
}

func TestRename(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	k, token := f.issue(t, apikey.IssueOptions{Name: "old"})
	if _, err := f.v.Verify(ctx, token); err != nil { // cache it
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	if err := f.m.Rename(ctx, k.ID, "  new name "); err != nil {
		t.Fatal(err)
	}
	got, err := f.m.Get(ctx, k.ID)
	if err != nil || got.Name != "new name" || !got.UpdatedAt.Equal(f.clock.Now()) {
		t.Errorf("after Rename: %q updated %v, %v", got.Name, got.UpdatedAt, err)
	}
	if p, err := f.v.Verify(ctx, token); err != nil || p.Name != "new name" {
		t.Errorf("linked Verifier still sees %q, %v", p.Name, err)
	}
	if err := f.m.Rename(ctx, "AAAAAAAAAAAA", "x"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Rename(unknown) = %v, want ErrNotFound", err)
	}
}

// The Owned operations act on the user's own keys and answer ErrNotFound,
// as for a key that does not exist, for another user's key, which they
// leave untouched.
func TestOwnedOperations(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	mallory, _, err := f.st.CreateUser(ctx, "mallory@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ada, adaToken := f.issue(t, apikey.IssueOptions{Name: "ada's"})
	const unknown = "AAAAAAAAAAAA"

	ops := map[string]func(user int64, id string) error{
		"GetOwned":    func(u int64, id string) error { _, err := f.m.GetOwned(ctx, u, id); return err },
		"RenameOwned": func(u int64, id string) error { return f.m.RenameOwned(ctx, u, id, "pwned") },
		"RollOwned": func(u int64, id string) error {
			_, _, err := f.m.RollOwned(ctx, u, id, time.Hour)
			return err
		},
		"RevokeOwned": func(u int64, id string) error { return f.m.RevokeOwned(ctx, u, id) },
	}
	for name, op := range ops {
		errOther, errUnknown := op(mallory, ada.ID), op(mallory, unknown)
		if !errors.Is(errOther, apikey.ErrNotFound) || errOther != errUnknown {
			t.Errorf("%s(another user's key) = %v, (unknown key) = %v: want the same ErrNotFound", name, errOther, errUnknown)
		}
	}
	got, err := f.m.Get(ctx, ada.ID)
	if err != nil || got.Name != "ada's" || !got.RevokedAt.IsZero() || len(got.PreviousSecretHash) != 0 {
		t.Fatalf("another user's attempts changed the key: %+v, %v", got, err)
	}
	if _, err := f.v.Verify(ctx, adaToken); err != nil {
		t.Fatalf("the owner's key stopped working: %v", err)
	}

	// The owner can do all of it.
	if k, err := f.m.GetOwned(ctx, f.userID, ada.ID); err != nil || k.ID != ada.ID {
		t.Errorf("GetOwned = %v", err)
	}
	if err := f.m.RenameOwned(ctx, f.userID, ada.ID, "renamed"); err != nil {
		t.Errorf("RenameOwned = %v", err)
	}
	if err := f.m.RenameOwned(ctx, f.userID, ada.ID, "bad\u202Ename"); !errors.Is(err, apikey.ErrInvalidOptions) {
		t.Errorf("RenameOwned(bidi name) = %v, want ErrInvalidOptions", err)
	}
	_, tok, err := f.m.RollOwned(ctx, f.userID, ada.ID, 0)
	if err != nil {
		t.Fatalf("RollOwned = %v", err)
	}
	if p, err := f.v.Verify(ctx, tok.Reveal()); err != nil || p.Name != "renamed" {
		t.Errorf("rolled key: %+v, %v", p, err)
	}
	if err := f.m.RevokeOwned(ctx, f.userID, ada.ID); err != nil {
		t.Errorf("RevokeOwned = %v", err)
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("after RevokeOwned: %v, want ErrRevoked", err)
	}
}
