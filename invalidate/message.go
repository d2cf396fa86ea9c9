package invalidate

import (
	"strconv"
	"strings"
)

// A message is text: a version word, the sender's origin, then events,
// separated by spaces: "apikit1 3kq9x0aa2m k:4tQ2x9LmZpB7 u:42 s:42 *".
// Key ids are base62 and user ids decimal, so no event needs escaping.
const version = "apikit1"

// maxID bounds an event's id: key ids are 12 characters, user ids at most
// 19 digits; ids of other key formats get some room.
const maxID = 64

type message struct {
	text   string
	all    bool
	events []Event
}

func valid(e Event) bool {
	switch e.Kind {
	case Everything:
		return e.ID == ""
	case KeyChanged:
		if len(e.ID) == 0 || len(e.ID) > maxID {
			return false
		}
		for i := 0; i < len(e.ID); i++ {
			if c := e.ID[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
				return false
			}
		}
		return true
	case UserChanged, SessionsRevoked:
		_, ok := e.UserID()
		return ok && e.ID == strconv.FormatInt(mustInt(e.ID), 10)
	}
	return false
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// encode packs events into messages of at most max bytes.
func encode(origin string, all bool, events map[Event]struct{}, max int) []message {
	head := version + " " + origin
	var msgs []message
	var b strings.Builder
	var cur []Event
	flush := func(allEvent bool) {
		msgs = append(msgs, message{text: b.String(), all: allEvent, events: cur})
		b.Reset()
		cur = nil
	}
	if all {
		// Everything supersedes every other event.
		b.WriteString(head + " *")
		flush(true)
		return msgs
	}
	for e := range events {
		word := string(e.Kind) + ":" + e.ID
		if b.Len() > 0 && b.Len()+1+len(word) > max {
			flush(false)
		}
		if b.Len() == 0 {
			b.WriteString(head)
		}
		b.WriteString(" " + word)
		cur = append(cur, e)
	}
	if b.Len() > 0 {
		flush(false)
	}
	return msgs
}

// decode reads a message; ok is false for a message of another format.
// Events it cannot read come back invalid (Kind 0), to be counted.
func decode(msg string) (origin string, events []Event, ok bool) {
	words := strings.Fields(msg)
	if len(words) < 2 || words[0] != version {
		return "", nil, false
	}
	for _, w := range words[2:] {
		if w == "*" {
			events = append(events, Event{Kind: Everything})
			continue
		}
		if len(w) < 3 || w[1] != ':' {
			events = append(events, Event{})
			continue
		}
		events = append(events, Event{Kind: Kind(w[0]), ID: w[2:]})
	}
	return words[1], events, true
}
