package readme_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeBlocksCompile checks that every ```go block of the README is
// compiled: its lines appear, in order and contiguous, in the body of one
// of this package's Example functions (which `go vet` and `go test`
// compile, and run where they have an Output comment).
func TestReadmeBlocksCompile(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	bodies := exampleBodies(t)
	blocks := goBlocks(string(readme))
	if len(blocks) < 5 {
		t.Fatalf("README has %d go blocks; the test found too few to be checking anything", len(blocks))
	}
	for _, b := range blocks {
		found := false
		for _, body := range bodies {
			if strings.Contains(body, b) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README block is in no Example of examples/readme (copy it from one, or add one):\n%s", b)
		}
	}
}

// goBlocks returns the README's ```go blocks, each line trimmed of
// trailing space, joined by newlines.
func goBlocks(readme string) []string {
	var blocks []string
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		var b []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b = append(b, strings.TrimRight(lines[i], " \t"))
		}
		blocks = append(blocks, strings.Join(b, "\n"))
	}
	return blocks
}

// exampleBodies returns the statements of every Example function in this
// package's test files, dedented by the function body's one tab.
func exampleBodies(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
				continue
			}
			body := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
			var out []string
			for _, l := range strings.Split(body, "\n") {
				out = append(out, strings.TrimRight(strings.TrimPrefix(l, "\t"), " \t"))
			}
			bodies = append(bodies, strings.Join(out, "\n"))
		}
	}
	return bodies
}
