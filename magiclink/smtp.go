package magiclink

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"net/url"
	"time"
)

// SMTPOptions configures an [SMTPMailer]. The zero value is a safe default.
type SMTPOptions struct {
	// From is the sender used for messages whose From is empty.
	From string

	// Timeout bounds one delivery: dialling, TLS, authentication and the
	// transfer together (default 30 seconds, or ctx's deadline if that is
	// sooner).
	Timeout time.Duration

	// TLSConfig is used for STARTTLS and smtps:// (default: verify the
	// server's certificate for the URL's host). Tests set it to trust a
	// self-signed certificate.
	TLSConfig *tls.Config

	// LocalName is the host name sent in EHLO (default "localhost").
	LocalName string
}

// SMTPMailer sends email to an SMTP server (a relay such as Postmark,
// SES, Mailgun or a local Postfix). Each Send opens a connection, so it
// holds nothing between messages. It is safe for concurrent use.
//
// With an smtp:// URL it upgrades the connection with STARTTLS whenever
// the server offers it; with smtps:// it speaks TLS from the start
// (implicit TLS, port 465). Credentials in the URL are sent with AUTH
// PLAIN, and only over TLS or to a server on localhost: a server that does
// not offer STARTTLS cannot downgrade the connection into revealing them.
type SMTPMailer struct {
	addr     string // host:port
	host     string
	implicit bool // smtps://
	user     *url.Userinfo
	opts     SMTPOptions
}

// NewSMTPMailer returns an [SMTPMailer] for a URL such as
// "smtp://user:pass@smtp.example.com:587" (the port defaults to 587) or
// "smtps://user:pass@smtp.example.com" (port 465). The user and password
// are URL-encoded ("user%40example.com").
func NewSMTPMailer(rawURL string, opts SMTPOptions) (*SMTPMailer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("magiclink: SMTP URL is not a URL")
	}
	m := &SMTPMailer{host: u.Hostname(), user: u.User, opts: opts}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		m.implicit = true
	default:
		return nil, fmt.Errorf("magiclink: SMTP URL %q must start with smtp:// or smtps://", u.Redacted())
	}
	if m.host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("magiclink: SMTP URL %q must be smtp[s]://[user:pass@]host[:port]", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "587"
		if m.implicit {
			port = "465"
		}
	}
	m.addr = net.JoinHostPort(m.host, port)
	if m.opts.Timeout <= 0 {
		m.opts.Timeout = 30 * time.Second
	}
	if m.opts.LocalName == "" {
		m.opts.LocalName = "localhost"
	}
	if m.opts.From != "" {
		if _, _, err := envelope(Message{From: m.opts.From, To: "x@example.com"}); err != nil {
			return nil, fmt.Errorf("magiclink: SMTPOptions.From: %w", err)
		}
	}
	return m, nil
}

// String returns the server's address, without credentials.
func (m *SMTPMailer) String() string {
	scheme := "smtp"
	if m.implicit {
		scheme = "smtps"
	}
	return scheme + "://" + m.addr
}

func (m *SMTPMailer) tlsConfig() *tls.Config {
	if m.opts.TLSConfig != nil {
		c := m.opts.TLSConfig.Clone()
		if c.ServerName == "" {
			c.ServerName = m.host
		}
		return c
	}
	return &tls.Config{ServerName: m.host, MinVersion: tls.VersionTLS12}
}

// Send implements [Mailer]: it delivers one message, as
// multipart/alternative when it has an HTML part, with Date and
// Message-ID headers.
func (m *SMTPMailer) Send(ctx context.Context, msg Message) error {
	if msg.From == "" {
		msg.From = m.opts.From
	}
	from, to, err := envelope(msg)
	if err != nil {
		return err
	}
	data, err := buildMessage(msg, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("magiclink: smtp: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // cancellation interrupts I/O
	defer stop()
	if m.implicit {
		tc := tls.Client(conn, m.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("magiclink: smtp: TLS: %w", err)
		}
		conn = tc
	}
	if err := m.deliver(conn, from, to, data); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("magiclink: smtp: %w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("magiclink: smtp: %w", err)
	}
	return nil
}

func (m *SMTPMailer) deliver(conn net.Conn, from, to string, data []byte) error {
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(m.opts.LocalName); err != nil {
		return err
	}
	if !m.implicit {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(m.tlsConfig()); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		}
	}
	if m.user != nil {
		pass, _ := m.user.Password()
		if err := c.Auth(smtp.PlainAuth("", m.user.Username(), pass, m.host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
