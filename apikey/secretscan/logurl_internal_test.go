package secretscan

import (
	"strings"
	"testing"

	"github.com/apikit/apikit/apikey"
)

// The log names where a leaked key was found, but never the key: GitHub's
// url may carry it in its query, fragment or path, and a url that does not
// parse is not logged at all.
func TestLogURL(t *testing.T) {
	tok, err := apikey.Generate("fav_live")
	if err != nil {
		t.Fatal(err)
	}
	token := tok.Reveal()
	tests := []struct{ in, want string }{
		{"https://github.com/octocat/app/blob/abc123/.env#L3", "https://github.com/octocat/app/blob/abc123/.env"},
		{"https://gist.example.com/raw?key=" + token, "https://gist.example.com/raw"},
		{"https://paste.example.com/" + token + "/raw", "https://paste.example.com/REDACTED/raw"},
		{"https://paste.example.com/raw/" + token + ".txt", "https://paste.example.com/raw/REDACTED.txt"},
		{"https://paste.example.com/a-" + token + "-b", "https://paste.example.com/a-REDACTED-b"},
		{"https://" + token + ".example.com/x", "https://REDACTED.example.com/x"},
		{"https://user:" + token + "@example.com/x", "https://example.com/x"},
		{"pasted " + token + " here", "(not logged)"},
		{"", "(not logged)"},
	}
	for _, tt := range tests {
		got := logURL(tt.in)
		if got != tt.want {
			t.Errorf("logURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, token) {
			t.Errorf("logURL(%q) holds the token", tt.in)
		}
	}
}
