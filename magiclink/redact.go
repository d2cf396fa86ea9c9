package magiclink

import (
	"strings"
)

// RedactEmail returns the address with its local part hidden, as
// "…@example.com", for logs.
func RedactEmail(email string) string {
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		return "…" + email[at:]
	}
	return "…"
}

// redactErr returns err's message with the address replaced by its
// redacted form (SMTP servers often echo the recipient).
func redactErr(err error, email string) string {
	msg := err.Error()
	if email != "" {
		msg = strings.ReplaceAll(msg, email, RedactEmail(email))
	}
	return msg
}
