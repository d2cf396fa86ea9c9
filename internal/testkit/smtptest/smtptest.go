// Package smtptest runs a real SMTP server in-process for tests
// (github.com/emersion/go-smtp as the server side), listening on
// 127.0.0.1, that keeps every message it accepts. It speaks AUTH PLAIN and,
// on request, STARTTLS or implicit TLS with a self-signed certificate, so
// that a client's TLS and authentication paths are tested for real.
//
//	srv := smtptest.Start(t, smtptest.Options{StartTLS: true, Username: "u", Password: "p"})
//	mailer, _ := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{TLSConfig: srv.ClientTLSConfig()})
//	… send …
//	link := srv.WaitLink(t, "ada@example.com")
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configures a [Server]. The zero value accepts mail from anyone
// over plain SMTP without authentication.
type Options struct {
	// Username and Password, if set, make AUTH PLAIN required before MAIL.
	Username, Password string
	// StartTLS offers STARTTLS with a self-signed certificate for
	// 127.0.0.1 and localhost. Clients must trust [Server.ClientTLSConfig].
	StartTLS bool
	// ImplicitTLS speaks TLS from the first byte (smtps://).
	ImplicitTLS bool
}

// Message is one accepted message.
type Message struct {
	From string   // envelope sender
	To   []string // envelope recipients
	Data []byte   // the message as received
	TLS  bool     // whether the connection was encrypted
	User string   // the authenticated user, if any

	Header mail.Header
	// Text and HTML are the decoded text/plain and text/html parts (of a
	// multipart/alternative body, or the single part).
	Text, HTML string
	// ContentType is the media type of the whole body, such as
	// "multipart/alternative".
	ContentType string
	// ParseErr is why the message could not be parsed as MIME, if it
	// could not.
	ParseErr error
}

// Server is a running SMTP server. Its methods are safe for concurrent
// use.
type Server struct {
	srv  *smtp.Server
	ln   net.Listener
	opts Options
	cert *x509.Certificate

	mu      sync.Mutex
	msgs    []Message
	taken   map[string]int // per recipient, messages returned by WaitLink
	fail    int            // reject this many more DATA commands
	failErr error
	arrived chan struct{} // closed and replaced on each message
}

// Start starts a server on 127.0.0.1:0 and stops it when the test ends.
func Start(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &Server{opts: o, taken: map[string]int{}, arrived: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.ErrorLog = log.New(io.Discard, "", 0) // clients that hang up are part of the tests
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.MaxRecipients = 10
	var tlsConfig *tls.Config
	if o.StartTLS || o.ImplicitTLS {
		cert, leaf, err := selfSigned()
		if err != nil {
			tb.Fatalf("smtptest: %v", err)
		}
		s.cert = leaf
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if o.StartTLS {
		s.srv.TLSConfig = tlsConfig
	} else {
		// Without STARTTLS, AUTH must still work on loopback.
		s.srv.AllowInsecureAuth = true
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	if o.ImplicitTLS {
		ln = tls.NewListener(ln, tlsConfig)
		s.srv.AllowInsecureAuth = true // the whole connection is TLS
	}
	s.ln = ln
	go func() { _ = s.srv.Serve(ln) }()
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns an smtp:// (or smtps://) URL for the server, with the
// credentials it requires, for magiclink.NewSMTPMailer.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr()}
	if s.opts.ImplicitTLS {
		u.Scheme = "smtps"
	}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	return u.String()
}

// ClientTLSConfig returns a client configuration that trusts the server's
// self-signed certificate (nil if the server has no TLS).
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// FailNext makes the server refuse the next n messages at DATA with a
// temporary error (451), as an overloaded relay does.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = n
	s.failErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
}

// Close stops the server; clients then get connection errors.
func (s *Server) Close() {
	s.ln.Close() // Serve may not have registered it with srv yet
	s.srv.Close()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait waits until at least n messages have arrived and returns them; it
// fails the test after 10 seconds.
func (s *Server) Wait(tb testing.TB, n int) []Message {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		msgs, arrived := append([]Message(nil), s.msgs...), s.arrived
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs
		}
		select {
		case <-arrived:
		case <-deadline:
			tb.Fatalf("smtptest: %d messages after 10s, want %d", len(msgs), n)
			return nil
		}
	}
}

var linkRe = regexp.MustCompile(`https?://[^\s"<>]+/login(?:/email)?/verify\?token=[A-Za-z0-9_-]+`)

// WaitLink waits for the next message to the address that an earlier
// WaitLink or WaitMessage has not returned, and returns the link in its
// plain-text part: a sign-in link (/login/verify) or an email-change link
// (/login/email/verify). It fails the test after 10 seconds, or if the
// message has no link.
func (s *Server) WaitLink(tb testing.TB, to string) string {
	tb.Helper()
	m := s.WaitMessage(tb, to)
	link := linkRe.FindString(m.Text)
	if link == "" {
		tb.Fatalf("smtptest: the message to %s has no login link:\n%s", to, m.Data)
	}
	return link
}

// WaitMessage waits for the next message to the address that an earlier
// WaitLink or WaitMessage has not returned, and returns it. It fails the
// test after 10 seconds.
func (s *Server) WaitMessage(tb testing.TB, to string) Message {
	tb.Helper()
	to = strings.ToLower(to)
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		seen := 0
		var found *Message
		for i := range s.msgs {
			if s.msgs[i].isTo(to) {
				if seen == s.taken[to] {
					found = &s.msgs[i]
					s.taken[to]++
					break
				}
				seen++
			}
		}
		arrived := s.arrived
		s.mu.Unlock()
		if found != nil {
			return *found
		}
		select {
		case <-arrived:
		case <-deadline:
			tb.Fatalf("smtptest: no new message to %s within 10s", to)
			return Message{}
		}
	}
}

func (m *Message) isTo(addr string) bool {
	for _, t := range m.To {
		if strings.EqualFold(t, addr) {
			return true
		}
	}
	return false
}

func (s *Server) add(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// session is one SMTP connection's state.
type session struct {
	s    *Server
	conn *smtp.Conn
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.opts.Username || password != ss.s.opts.Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	if ss.s.fail > 0 {
		ss.s.fail--
		err := ss.s.failErr
		ss.s.mu.Unlock()
		return err
	}
	ss.s.mu.Unlock()
	_, isTLS := ss.conn.TLSConnectionState()
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data, TLS: isTLS, User: ss.user}
	m.parse()
	ss.s.add(m)
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// parse fills in the header and the decoded text parts.
func (m *Message) parse() {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		m.ParseErr = err
		return
	}
	m.Header = msg.Header
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		m.ParseErr = fmt.Errorf("Content-Type: %w", err)
		return
	}
	m.ContentType = mt
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := decode(msg.Body, msg.Header.Get("Content-Transfer-Encoding"))
		m.ParseErr = err
		m.setPart(mt, body)
		return
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			m.ParseErr = err
			return
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body, err := decode(p, p.Header.Get("Content-Transfer-Encoding"))
		if err != nil {
			m.ParseErr = err
			return
		}
		m.setPart(pt, body)
	}
}

func (m *Message) setPart(mediaType, body string) {
	switch mediaType {
	case "text/plain":
		m.Text = body
	case "text/html":
		m.HTML = body
	}
}

func decode(r io.Reader, cte string) (string, error) {
	if strings.EqualFold(cte, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	return strings.ReplaceAll(string(b), "\r\n", "\n"), err
}

// selfSigned returns a certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}
