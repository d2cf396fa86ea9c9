package app

import (
	"net/http"
	"sync"
	"time"
	"unicode/utf8"
)

// The favorites endpoints are the API's hot paths; their bodies, of a fixed
// shape, are appended to a pooled buffer instead of going through
// encoding/json's reflection. The output is byte for byte what writeJSON
// (a json.Encoder with its defaults) writes: same field order, same string
// escaping (including HTML-safe <, > and &, U+2028 and U+2029, and invalid
// UTF-8 as U+FFFD), same time format and the same trailing newline; the
// fuzz tests compare the two.

// writeFavorite writes fav as writeJSON would.
func writeFavorite(w http.ResponseWriter, status int, fav Favorite) {
	if !encodable(fav.CreatedAt) {
		writeJSON(w, status, fav)
		return
	}
	bp := getBuf()
	b := appendFavorite((*bp)[:0], fav)
	writeBody(w, status, append(b, '\n'))
	putBuf(bp, b)
}

// writeList writes body as writeJSON would.
func writeList(w http.ResponseWriter, status int, body listResponse) {
	for _, fav := range body.Favorites {
		if !encodable(fav.CreatedAt) {
			writeJSON(w, status, body)
			return
		}
	}
	bp := getBuf()
	b := appendList((*bp)[:0], body)
	writeBody(w, status, append(b, '\n'))
	putBuf(bp, b)
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// bufPool holds the response buffers; those grown past maxPooledBuf (a
// page of long URLs) are left to the garbage collector.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte, b []byte) {
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		bufPool.Put(bp)
	}
}

// encodable reports whether t is a time that time.Time.MarshalJSON
// accepts (a four-digit year and an offset of whole minutes under a day),
// so that appendFavorite writes what it would; the API's times are all UTC.
func encodable(t time.Time) bool {
	_, off := t.Zone()
	y := t.Year()
	return 0 <= y && y <= 9999 && off%60 == 0 && -24*3600 < off && off < 24*3600
}

func appendList(b []byte, body listResponse) []byte {
	b = append(b, `{"favorites":`...)
	b = appendArray(b, body.Favorites, appendFavorite)
	b = append(b, `,"next_cursor":`...)
	if body.NextCursor == nil {
		return append(b, "null}"...)
	}
	b = appendString(b, *body.NextCursor)
	return append(b, '}')
}

func appendFavorite(b []byte, fav Favorite) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, fav.ID)
	b = append(b, `,"name":`...)
	b = appendString(b, fav.Name)
	b = append(b, `,"url":`...)
	b = appendString(b, fav.URL)
	b = append(b, `,"tags":`...)
	b = appendArray(b, fav.Tags, appendString)
	b = append(b, `,"created_at":"`...)
	b = fav.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// appendArray appends items as a JSON array, each written by appendItem;
// a nil slice is null, as encoding/json writes it.
func appendArray[T any](b []byte, items []T, appendItem func([]byte, T) []byte) []byte {
	if items == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, item := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendItem(b, item)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it with HTML escaping on (json.Marshal's and json.Encoder's
// default).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
