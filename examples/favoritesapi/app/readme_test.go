package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/testenv"
)

// readmeStep is one ```sh block of the README's walkthrough and the
// ```text block after it, if any: the output it must print.
type readmeStep struct {
	script, want string
}

// walkthrough extracts the steps of the README's curl walkthrough: the
// blocks between its heading and "### Operating it".
func walkthrough(t *testing.T) []readmeStep {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## Walkthrough")
	end := strings.Index(s, "### Operating it")
	if start < 0 || end < start {
		t.Fatal("README.md has no walkthrough section ending at \"### Operating it\"")
	}
	var steps []readmeStep
	lines := strings.Split(s[start:end], "\n")
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok || lang == "" {
			continue
		}
		var block []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			block = append(block, lines[i])
		}
		body := strings.Join(block, "\n")
		switch lang {
		case "sh":
			steps = append(steps, readmeStep{script: body})
		case "text":
			if len(steps) == 0 {
				t.Fatalf("README walkthrough: output block before any command:\n%s", body)
			}
			steps[len(steps)-1].want = body
		}
	}
	return steps
}

// TestReadmeWalkthrough runs the README's curl commands against a live
// server, in order, and checks the output the README shows.
func TestReadmeWalkthrough(t *testing.T) {
	testenv.Program(t, "curl")
	testenv.Program(t, "jq")
	steps := walkthrough(t)
	if len(steps) < 5 {
		t.Fatalf("README walkthrough has %d commands", len(steps))
	}
	s := startServer(t, sqliteDB, app.Config{})
	c := newCustomer(t, s, "readme@example.com")

	// The steps run in one shell, in order, as a reader pastes them: a
	// variable one sets is there for the next. Markers split the output.
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	var run []int
	for i, step := range steps {
		if strings.HasPrefix(step.script, "export KEY=") {
			continue // the reader pastes their key; the test sets it
		}
		run = append(run, i)
		// A reader pastes one step at a time; all of them within a few
		// milliseconds would exceed the hobby plan's 10 requests a second
		// (a POST costs 5), so the steps are spaced as a fast reader's.
		fmt.Fprintf(&script, "sleep 0.6\necho '%s%d'\n%s\n", marker, i, strings.ReplaceAll(step.script, "http://localhost:8080", s.URL))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Env = append(os.Environ(), "KEY="+c.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\noutput:\n%s", err, out)
	}
	outputs := map[int]string{}
	for _, part := range strings.Split(string(out), marker)[1:] {
		num, rest, _ := strings.Cut(part, "\n")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("walkthrough output: %q", part)
		}
		outputs[n] = strings.TrimSpace(rest)
	}
	for _, i := range run {
		step, got := steps[i], outputs[i]
		switch {
		case step.want != "" && got != strings.TrimSpace(step.want):
			t.Errorf("README step %d:\n%s\nprinted:\n%s\nthe README shows:\n%s", i+1, step.script, got, step.want)
		case step.want == "" && (got == "" || strings.Contains(got, `"title":`)):
			t.Errorf("README step %d printed an error or nothing:\n%s\noutput:\n%s", i+1, step.script, got)
		}
	}
}

// marker separates the steps' outputs.
const marker = "--- README step "
