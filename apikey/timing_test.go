package apikey_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

// TestVerifyTimingDoesNotLeakTheSecret checks that how long a cached key's
// verification takes does not depend on how much of a guessed secret is
// right: a wrong secret that differs from the real one in its first
// character, one that differs only in its last, and the right secret take
// the same time within noise. (The secret is hashed and the hashes are
// compared with crypto/subtle, so a guess learns nothing from timing; this
// test guards against a future shortcut.)
//
// It compares medians of interleaved samples, so that drifts of a shared
// machine hit every candidate alike, and allows a wide margin: a
// byte-by-byte comparison of 38 characters would differ far more.
func TestVerifyTimingDoesNotLeakTheSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("timing measurement")
	}
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	secretStart := len(token) - apikey.CheckLen - 32
	flip := func(i int) string {
		b := []byte(token)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return relabelWithChecksum(t, string(b))
	}
	candidates := []struct {
		name  string
		token string
		valid bool
	}{
		{"right secret", token, true},
		{"wrong first character", flip(secretStart), false},
		{"wrong last character", flip(secretStart + 31), false},
	}
	for _, c := range candidates { // warm the cache and check the setup
		_, err := f.v.Verify(ctx, c.token)
		if (err == nil) != c.valid {
			t.Fatalf("%s: Verify error %v", c.name, err)
		}
	}
	// A machine busy with other tests can skew one measurement; a leak
	// shows in every one. So measure up to three times.
	var first, last time.Duration
	for attempt := 1; attempt <= 3; attempt++ {
		medians := measureVerify(ctx, f.v, candidates)
		for i, m := range medians {
			t.Logf("attempt %d: %-22s median %v per verification", attempt, candidates[i].name, m)
		}
		first, last = medians[1], medians[2]
		if diff := max(first, last) - min(first, last); diff <= max(first, last)/4+100*time.Nanosecond {
			return
		}
	}
	t.Errorf("a wrong first character takes %v, a wrong last character %v: the comparison leaks how much of the secret is right", first, last)
}

// measureVerify returns the median time of one verification of each
// candidate, sampled in interleaved batches.
func measureVerify(ctx context.Context, v *apikey.Verifier, candidates []struct {
	name  string
	token string
	valid bool
}) []time.Duration {
	const rounds, batch = 200, 50
	samples := make([][]time.Duration, len(candidates))
	for range rounds {
		for i, c := range candidates {
			start := time.Now()
			for range batch {
				v.Verify(ctx, c.token)
			}
			samples[i] = append(samples[i], time.Since(start)/batch)
		}
	}
	medians := make([]time.Duration, len(candidates))
	for i, s := range samples {
		slices.Sort(s)
		medians[i] = s[len(s)/2]
	}
	return medians
}
