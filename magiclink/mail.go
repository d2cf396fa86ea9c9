package magiclink

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Mailer sends an email. Implementations must be safe for concurrent use
// and should honour ctx's deadline. The [Service] calls Send from its mail
// workers, never on the request path, and retries failures.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// MailerFunc adapts a function to a [Mailer].
type MailerFunc func(ctx context.Context, m Message) error

// Send calls f.
func (f MailerFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// Message is an email with a plain-text body and, optionally, an HTML
// alternative. From and To are RFC 5322 addresses ("Name <a@b.example>" or
// "a@b.example"); no field may contain a line break.
type Message struct {
	From, To, Subject string
	Text, HTML        string
}

// ErrBadMessage is wrapped by the error a [Mailer] returns for a message
// that cannot be sent as it is (a missing or malformed address, a line
// break in a header). Retrying it is pointless.
var ErrBadMessage = errors.New("magiclink: malformed message")

// ConsoleMailer writes each email to an io.Writer instead of sending it,
// for local development: the headers, then the plain-text body, in which
// the login link stands on a line of its own. It is safe for concurrent
// use; emails are never interleaved.
type ConsoleMailer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsoleMailer returns a [ConsoleMailer] writing to w.
func NewConsoleMailer(w io.Writer) *ConsoleMailer { return &ConsoleMailer{w: w} }

// Send implements [Mailer].
func (c *ConsoleMailer) Send(_ context.Context, m Message) error {
	var b strings.Builder
	b.WriteString("---- email ----\n")
	fmt.Fprintf(&b, "From: %s\nTo: %s\nSubject: %s\n\n", m.From, m.To, m.Subject)
	b.WriteString(strings.TrimRight(m.Text, "\n"))
	b.WriteString("\n---- end ----\n")
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.w, b.String())
	return err
}

// envelope checks a message's addresses and returns the bare ones for the
// SMTP envelope.
func envelope(m Message) (from, to string, err error) {
	for _, f := range []string{m.From, m.To, m.Subject} {
		if strings.ContainsAny(f, "\r\n") {
			return "", "", fmt.Errorf("%w: a header contains a line break", ErrBadMessage)
		}
	}
	fa, err := mail.ParseAddress(m.From)
	if err != nil {
		return "", "", fmt.Errorf("%w: From: %v", ErrBadMessage, err)
	}
	ta, err := mail.ParseAddress(m.To)
	if err != nil {
		return "", "", fmt.Errorf("%w: To is not an address", ErrBadMessage)
	}
	return fa.Address, ta.Address, nil
}

// buildMessage renders m as an RFC 5322 message: headers, then a
// multipart/alternative body (text/plain then text/html, each
// quoted-printable), or a single text/plain part when there is no HTML.
func buildMessage(m Message, now time.Time) ([]byte, error) {
	from, to, err := envelope(m)
	if err != nil {
		return nil, err
	}
	fa, _ := mail.ParseAddress(m.From)
	ta, _ := mail.ParseAddress(m.To)
	domain := from[strings.LastIndexByte(from, '@')+1:]
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", fa.String())
	header("To", ta.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+rand.Text()+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Auto-Submitted", "auto-generated")
	_ = to
	if m.HTML == "" {
		cte := transferEncoding(m.Text)
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", cte)
		b.WriteString("\r\n")
		if err := writeBody(&b, cte, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	mw := multipart.NewWriter(&b)
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		cte := transferEncoding(part.body)
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {cte},
		})
		if err != nil {
			return nil, err
		}
		if err := writeBody(w, cte, part.body); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// transferEncoding chooses how a body travels: as it is ("7bit") when it
// is ASCII in short lines, so that links stay whole even in the raw
// message, and quoted-printable otherwise.
func transferEncoding(body string) string {
	for line := range strings.Lines(body) {
		if len(line) > 500 {
			return "quoted-printable"
		}
		for i := 0; i < len(line); i++ {
			c := line[i]
			crlf := c == '\r' && i == len(line)-2 && line[i+1] == '\n'
			if c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n' && !crlf) {
				return "quoted-printable"
			}
		}
	}
	return "7bit"
}

// writeBody writes body in the transfer encoding, with CRLF line ends.
func writeBody(w io.Writer, cte, body string) error {
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	if cte == "7bit" {
		_, err := io.WriteString(w, body)
		return err
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, body); err != nil {
		return err
	}
	return qp.Close()
}
