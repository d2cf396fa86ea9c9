package app

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

// jsonText is what writeJSON writes for v: a json.Encoder's output.
func jsonText(t testing.TB, v any) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// escapeCases are strings whose escaping differs between JSON encoders.
var escapeCases = []string{
	"", "plain", `quote " and backslash \`, "<script>&amp;</script>",
	"\x00\x01\b\f\n\r\t\x1f\x7f", "café ☕ 😀", "line\u2028para\u2029end",
	"bad \xff utf-8 \xc3", "\xed\xa0\x80 surrogate", "https://example.com/?a=1&b=<2>",
}

// The hot paths' encoder writes exactly what encoding/json writes.
func TestAppendFavoriteMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 29, 23, 9, 52, 123456000, time.UTC)
	for _, s := range escapeCases {
		for _, fav := range []Favorite{
			{ID: s, Name: s, URL: s, Tags: []string{s, "x"}, CreatedAt: at},
			{ID: "AAAAAAAAAAAAAAAA", Name: s, Tags: []string{}, CreatedAt: at.Truncate(time.Second)},
			{Name: s, Tags: nil, CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", -90*60))},
		} {
			if got, want := string(appendFavorite(nil, fav))+"\n", jsonText(t, fav); got != want {
				t.Errorf("appendFavorite(%q)\n got %s\nwant %s", s, got, want)
			}
			cursor := s
			for _, body := range []listResponse{{}, {Favorites: []Favorite{}}, {Favorites: []Favorite{fav, fav}, NextCursor: &cursor}} {
				if got, want := string(appendList(nil, body))+"\n", jsonText(t, body); got != want {
					t.Errorf("appendList(%q)\n got %s\nwant %s", s, got, want)
				}
			}
		}
	}
}

// writeFavorite and writeList answer as writeJSON does, headers included,
// and fall back to it for times encoding/json refuses.
func TestWriteFavoriteMatchesWriteJSON(t *testing.T) {
	for _, at := range []time.Time{time.Now().UTC(), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		fav := Favorite{ID: "AAAAAAAAAAAAAAAA", Name: "n", URL: "https://example.com", Tags: []string{"a"}, CreatedAt: at}
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, 201, fav)
		writeFavorite(got, 201, fav)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("writeFavorite: %d %v %q, writeJSON: %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
		body := listResponse{Favorites: []Favorite{fav}}
		want, got = httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, 200, body)
		writeList(got, 200, body)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("writeList: %d %v %q, writeJSON: %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

// FuzzAppendFavorite compares the encoder with encoding/json on arbitrary
// favorites and pages.
func FuzzAppendFavorite(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s, s, s, s, int64(1764457792123456789), int16(0), false)
	}
	f.Add("AAAAAAAAAAAAAAAA", "name", "https://example.com", "go", int64(0), int16(-330), true)
	f.Fuzz(func(t *testing.T, id, name, url, tag string, nanos int64, offMinutes int16, nilTags bool) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(offMinutes)%(24*60)*60))
		fav := Favorite{ID: id, Name: name, URL: url, Tags: []string{tag, name}, CreatedAt: at}
		if nilTags {
			fav.Tags = nil
		}
		if !encodable(at) {
			t.Fatalf("encodable(%v) = false", at)
		}
		if got, want := string(appendFavorite(nil, fav))+"\n", jsonText(t, fav); got != want {
			t.Fatalf("appendFavorite\n got %s\nwant %s", got, want)
		}
		body := listResponse{Favorites: []Favorite{fav, {Tags: []string{}, CreatedAt: at.UTC()}}, NextCursor: &tag}
		if got, want := string(appendList(nil, body))+"\n", jsonText(t, body); got != want {
			t.Fatalf("appendList\n got %s\nwant %s", got, want)
		}
	})
}

// parseTags decodes what json.Unmarshal decodes, and fails where it fails.
func FuzzParseTags(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `["a","b"]`, `["a", "b"]`, `["a",]`, `["a""b"]`, `[""]`,
		`["\u003c"]`, `["a\"b"]`, "[\"\xff\"]", "[\"\x01\"]", `[1]`, `{}`, `["a"]x`, `[`, `"`, ``, `["]`} {
		f.Add(s)
	}
	for _, s := range escapeCases {
		b, _ := json.Marshal([]string{s, "tag"})
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTags(s)
		var want []string
		werr := json.Unmarshal([]byte(s), &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parseTags(%q) error %v, json.Unmarshal error %v", s, err, werr)
		}
		if err != nil {
			return
		}
		if want == nil {
			want = []string{}
		}
		if got == nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("parseTags(%q) = %q, want %q", s, got, want)
		}
	})
}

// Tags written by create read back as they were.
func FuzzTagsRoundTrip(f *testing.F) {
	f.Add("go", "<b>", "café")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		tags := []string{a, b, c}
		text, err := json.Marshal(tags)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseTags(string(text))
		var want []string
		if werr := json.Unmarshal(text, &want); err != nil || werr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("parseTags(%s) = %q, %v; want %q, %v", text, got, err, want, werr)
		}
	})
}

// Behind a pooler in transaction mode (binary_parameters=yes, as
// postgres.Options.TransactionPooling sets) the statements are not
// prepared; everywhere else they are.
func TestTransactionPooled(t *testing.T) {
	for url, want := range map[string]bool{
		"postgres://u@h/db?binary_parameters=yes":                   true,
		"postgresql://u@h/db?sslmode=disable&binary_parameters=yes": true,
		"postgres://u@h/db?sslmode=disable":                         false,
		"postgres://u@h/db?binary_parameters=no":                    false,
		"favorites.db":                                              false,
		"file:favorites.db?binary_parameters=yes":                   false,
	} {
		if got := transactionPooled(url); got != want {
			t.Errorf("transactionPooled(%q) = %v, want %v", url, got, want)
		}
	}
}
