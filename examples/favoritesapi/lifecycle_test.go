package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/examples/favoritesapi/app"
)

// TestKeyAttributesAndAuditCommand: "keys issue" takes an expiry, tags,
// networks and metadata; "keys revoke", "override" and "delete-account"
// are the operator's in the security log; "audit" exports it as JSON
// lines, all of it or one account's, with no token in it.
func TestKeyAttributesAndAuditCommand(t *testing.T) {
	ctx := t.Context()
	vars := map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "f.db"), "USER": "grace"}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"migrate"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("migrate exited %d: %s", code, stderr.String())
	}
	st, err := app.Open(ctx, vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ada, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := st.CreateUser(ctx, "bob@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	for _, bad := range [][]string{
		{"--expires-in", "-1"},
		{"--networks", "10.0.0.0/33"},
	} {
		stderr.Reset()
		args := append([]string{"keys", "issue", "--email", "ada@example.com"}, bad...)
		if code := run(ctx, args, env(vars), &stdout, &stderr); code != 2 {
			t.Errorf("keys issue %v exited %d, want 2: %s", bad, code, stderr.String())
		}
	}
	stderr.Reset()
	if code := run(ctx, []string{"keys", "issue", "--email", "ada@example.com", "--metadata", "[1]"}, env(vars), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "metadata") {
		t.Errorf("keys issue with metadata not an object exited %d: %s", code, stderr.String())
	}

	stdout.Reset()
	stderr.Reset()
	args := []string{"keys", "issue", "--email", "ada@example.com", "--name", "ci", "--expires-in", "90",
		"--tags", "ci,team:billing", "--networks", "203.0.113.0/24, 198.51.100.7", "--metadata", `{"customer":"acme"}`}
	if code := run(ctx, args, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("keys issue exited %d: %s", code, stderr.String())
	}
	token := strings.TrimSpace(stdout.String())
	tok, err := apikey.Parse(token)
	if err != nil {
		t.Fatalf("keys issue printed %q: %v", token, err)
	}
	k, err := apikey.NewManager(st, apikey.ManagerOptions{}).Get(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(k.ExpiresAt); d < 89*24*time.Hour || d > 90*24*time.Hour ||
		!slices.Equal(k.Tags, []string{"ci", "team:billing"}) || len(k.AllowedCIDRs) != 2 || string(k.Metadata) != `{"customer":"acme"}` {
		t.Errorf("issued key: expires %v, tags %v, networks %v, metadata %s", k.ExpiresAt, k.Tags, k.AllowedCIDRs, k.Metadata)
	}
	if !strings.Contains(stderr.String(), "expires ") {
		t.Errorf("keys issue does not say when the key expires: %s", stderr.String())
	}
	if code := run(ctx, []string{"keys", "revoke", tok.ID}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("keys revoke exited %d: %s", code, stderr.String())
	}
	if code := run(ctx, []string{"override", "--email", "bob@example.com", "--quota", "5/day"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("override exited %d: %s", code, stderr.String())
	}

	export := func(args ...string) []audit.Event {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		if code := run(ctx, append([]string{"audit"}, args...), env(vars), &stdout, &stderr); code != 0 {
			t.Fatalf("audit %v exited %d: %s", args, code, stderr.String())
		}
		if strings.Contains(stdout.String(), token) || strings.Contains(stdout.String(), tok.ID+"_") {
			t.Errorf("the export holds the token")
		}
		var evs []audit.Event
		sc := bufio.NewScanner(&stdout)
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("export line %q: %v", sc.Text(), err)
			}
			evs = append(evs, e)
		}
		return evs
	}
	all := export()
	var kinds []string
	for _, e := range all {
		kinds = append(kinds, string(e.Kind))
		if e.Actor != (audit.Actor{Kind: audit.ActorOperator, ID: "grace"}) {
			t.Errorf("%s by %+v, want the operator grace", e.Kind, e.Actor)
		}
	}
	if want := []string{"key.issued", "key.revoked", "billing.plan_changed"}; !slices.Equal(kinds, want) {
		t.Errorf("exported kinds %v, want %v (oldest first)", kinds, want)
	}
	if e := all[0]; e.UserID != ada || e.KeyID != tok.ID || e.Detail["expires_at"] == "" {
		t.Errorf("key.issued event = %+v", e)
	}
	if e := all[2]; e.UserID != bob || e.Detail["override"] != "set" {
		t.Errorf("override event = %+v", e)
	}
	if evs := export("--email", "bob@example.com"); len(evs) != 1 || evs[0].UserID != bob {
		t.Errorf("bob's export = %+v", evs)
	}
	if code := run(ctx, []string{"delete-account", "--email", "bob@example.com"}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("delete-account exited %d: %s", code, stderr.String())
	}
	if all := export(); all[len(all)-1].Kind != audit.AccountDeleted || all[len(all)-1].UserID != bob ||
		all[len(all)-1].Actor != (audit.Actor{Kind: audit.ActorOperator, ID: "grace"}) {
		t.Errorf("last event after delete-account = %+v", all[len(all)-1])
	}
	stderr.Reset()
	if code := run(ctx, []string{"audit", "--email", "nobody@example.com"}, env(vars), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no user") {
		t.Errorf("audit for an unknown address exited %d: %s", code, stderr.String())
	}
	if code := run(ctx, []string{"audit", "extra"}, env(vars), &stdout, &stderr); code != 2 {
		t.Errorf("audit with an argument exited %d", code)
	}
}
