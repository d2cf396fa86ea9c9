package magiclink_test

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/smtptest"
	"github.com/apikit/apikit/magiclink"
)

var testMessage = magiclink.Message{
	From:    "FavoritesAPI <login@example.com>",
	To:      "ada@example.com",
	Subject: "Sign in — FavoritesAPI",
	Text:    "Sign in:\n\nhttps://api.example.com/login/verify?token=" + strings.Repeat("A", 43) + "\n",
	HTML:    `<p><a href="https://api.example.com/login/verify?token=` + strings.Repeat("A", 43) + `">Sign in</a></p>`,
}

func TestSMTPMailer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     smtptest.Options
		wantTLS  bool
		wantUser string
	}{
		{"Plain", smtptest.Options{}, false, ""},
		{"PlainAuthOnLoopback", smtptest.Options{Username: "apikit", Password: "s3cret pass"}, false, "apikit"},
		{"StartTLSAndAuth", smtptest.Options{StartTLS: true, Username: "apikit", Password: "s3cret"}, true, "apikit"},
		{"ImplicitTLS", smtptest.Options{ImplicitTLS: true, Username: "apikit", Password: "s3cret"}, true, "apikit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, tc.opts)
			m, err := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{TLSConfig: srv.ClientTLSConfig()})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Send(t.Context(), testMessage); err != nil {
				t.Fatal(err)
			}
			got := srv.Wait(t, 1)[0]
			if got.TLS != tc.wantTLS || got.User != tc.wantUser {
				t.Errorf("TLS %v, user %q; want %v, %q", got.TLS, got.User, tc.wantTLS, tc.wantUser)
			}
			if got.ParseErr != nil || got.ContentType != "multipart/alternative" {
				t.Fatalf("%s, %v:\n%s", got.ContentType, got.ParseErr, got.Data)
			}
			if got.Text != testMessage.Text || got.HTML != testMessage.HTML {
				t.Errorf("parts did not survive the trip:\n%q\n%q", got.Text, got.HTML)
			}
			if s := got.Header.Get("Subject"); s == testMessage.Subject || !strings.HasPrefix(s, "=?utf-8?") {
				t.Errorf("raw Subject %q; want it RFC 2047-encoded", s)
			}
			dec, err := new(mime.WordDecoder).DecodeHeader(got.Header.Get("Subject"))
			if err != nil || dec != testMessage.Subject {
				t.Errorf("decoded Subject %q, %v", dec, err)
			}
			if strings.Contains(m.String(), "s3cret") {
				t.Errorf("String() shows the password: %s", m)
			}
		})
	}

	t.Run("TextOnly", func(t *testing.T) {
		srv := smtptest.Start(t)
		m, _ := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{})
		msg := testMessage
		msg.HTML = ""
		if err := m.Send(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		if got := srv.Wait(t, 1)[0]; got.ContentType != "text/plain" || got.Text != msg.Text {
			t.Errorf("%s %q", got.ContentType, got.Text)
		}
	})

	t.Run("EncodingsRoundTrip", func(t *testing.T) {
		srv := smtptest.Start(t)
		m, _ := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{})
		link := "https://api.example.com/login/verify?token=" + strings.Repeat("A", 43)
		for i, text := range []string{
			"Plain ASCII keeps the link whole:\n" + link + "\n",
			"Café ✓ needs quoted-printable\n" + link + "\n",
			"a lone\rcarriage return, and = signs\n",
			strings.Repeat("long line ", 80) + "\n",
		} {
			if err := m.Send(t.Context(), magiclink.Message{From: testMessage.From, To: "ada@example.com", Subject: "x", Text: text}); err != nil {
				t.Fatal(err)
			}
			got := srv.Wait(t, i+1)[i]
			want := strings.ReplaceAll(text, "\r", "\n") // a lone CR, never valid in mail, becomes a line break
			if got.Text != want {
				t.Errorf("text %d: got %q, want %q", i, got.Text, want)
			}
			raw := string(got.Data)
			if i == 0 && !strings.Contains(raw, link) {
				t.Errorf("ASCII text: the raw message does not hold the whole link:\n%s", raw)
			}
			if i > 0 && !strings.Contains(raw, "quoted-printable") {
				t.Errorf("text %d was not quoted-printable:\n%s", i, raw)
			}
		}
	})

	t.Run("UntrustedCertificate", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{StartTLS: true})
		m, _ := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{}) // system roots only
		if err := m.Send(t.Context(), testMessage); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Send to a self-signed server = %v; want a certificate error", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("%d messages delivered", n)
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{StartTLS: true, Username: "apikit", Password: "right"})
		u := strings.Replace(srv.URL(), ":right@", ":wrong@", 1)
		m, _ := magiclink.NewSMTPMailer(u, magiclink.SMTPOptions{TLSConfig: srv.ClientTLSConfig()})
		err := m.Send(t.Context(), testMessage)
		if err == nil || !strings.Contains(err.Error(), "AUTH") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("Send with a wrong password = %v; want an AUTH error without the password", err)
		}
	})

	t.Run("HeaderInjection", func(t *testing.T) {
		srv := smtptest.Start(t)
		m, _ := magiclink.NewSMTPMailer(srv.URL(), magiclink.SMTPOptions{})
		for _, msg := range []magiclink.Message{
			{From: testMessage.From, To: "ada@example.com\r\nBcc: eve@example.com", Subject: "x", Text: "x"},
			{From: testMessage.From, To: "ada@example.com", Subject: "x\r\nBcc: eve@example.com", Text: "x"},
			{From: "", To: "ada@example.com", Subject: "x", Text: "x"},
		} {
			if err := m.Send(t.Context(), msg); !errors.Is(err, magiclink.ErrBadMessage) {
				t.Errorf("Send(%q) = %v, want ErrBadMessage", msg, err)
			}
		}
	})

	t.Run("ServerDown", func(t *testing.T) {
		srv := smtptest.Start(t)
		u := srv.URL()
		srv.Close()
		m, _ := magiclink.NewSMTPMailer(u, magiclink.SMTPOptions{Timeout: 2 * time.Second})
		if err := m.Send(t.Context(), testMessage); err == nil {
			t.Error("Send to a stopped server succeeded")
		}
	})
}

func TestNewSMTPMailerURLs(t *testing.T) {
	for _, u := range []string{"", "http://smtp.example.com", "smtp://", "smtp://smtp.example.com/path", "smtp://smtp.example.com?x=1", "::"} {
		if _, err := magiclink.NewSMTPMailer(u, magiclink.SMTPOptions{}); err == nil {
			t.Errorf("NewSMTPMailer(%q) succeeded", u)
		}
	}
	for u, want := range map[string]string{
		"smtp://user:pass@smtp.example.com":         "smtp://smtp.example.com:587",
		"smtps://user:pass@smtp.example.com":        "smtps://smtp.example.com:465",
		"smtp://smtp.example.com:2525":              "smtp://smtp.example.com:2525",
		"smtp://user%40example.com:p%40ss@[::1]:25": "smtp://[::1]:25",
	} {
		m, err := magiclink.NewSMTPMailer(u, magiclink.SMTPOptions{})
		if err != nil || m.String() != want {
			t.Errorf("NewSMTPMailer(%q) = %v, %v; want %s", u, m, err, want)
		}
	}
}

func TestMailRetries(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	h.smtp.FailNext(2) // 451 twice, as a busy relay does
	postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
	h.smtp.WaitLink(t, "ada@example.com")
	st := h.waitStats(func(s magiclink.Stats) bool { return s.MailSent == 1 })
	if st.MailRetries != 2 || st.MailFailed != 0 {
		t.Errorf("stats %+v; want 2 retries then success", st)
	}
}

func TestMailGivesUp(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.SendAttempts = 2 }})
	h.user("ada@example.com")
	h.smtp.FailNext(2)
	postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
	st := h.waitStats(func(s magiclink.Stats) bool { return s.MailFailed == 1 })
	if st.MailRetries != 1 || st.MailSent != 0 {
		t.Errorf("stats %+v", st)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "giving up") || strings.Contains(logs, "ada@example.com") {
		t.Errorf("the failure is not logged, or logged with the address:\n%s", logs)
	}
}

func TestSMTPDownDoesNotHoldRequests(t *testing.T) {
	h := newHarness(t, setup{faulty: true, options: func(o *magiclink.Options) { o.SendAttempts = 10 }})
	h.user("ada@example.com")
	h.proxy.Down()
	// The request is answered while the SMTP server is unreachable: the
	// email is sent after the response, by the queue.
	r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
	if r.status != http.StatusOK {
		t.Fatalf("POST /login with SMTP down = %d", r.status)
	}
	h.waitStats(func(s magiclink.Stats) bool { return s.MailRetries >= 2 })
	if st := h.svc.Stats(); st.MailSent != 0 {
		t.Fatalf("sent with the server down: %+v", st)
	}
	h.proxy.Up()
	h.smtp.WaitLink(t, "ada@example.com")
	if st := h.waitStats(func(s magiclink.Stats) bool { return s.MailSent == 1 }); st.MailFailed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.Workers = 1 }})
	const n = 5
	for i := range n {
		email := fmt.Sprintf("user%d@example.com", i)
		h.user(email)
		postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {email}})
	}
	h.closed = true
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.svc.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := len(h.smtp.Messages()); got != n {
		t.Errorf("%d emails delivered by the time Close returned, want %d", got, n)
	}
	// Closed: requests are refused, with the same response for everyone.
	if r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"user0@example.com"}}); r.status != http.StatusServiceUnavailable {
		t.Errorf("POST /login after Close = %d, want 503", r.status)
	}
}

func TestCloseReportsUnsent(t *testing.T) {
	h := newHarness(t, setup{faulty: true, options: func(o *magiclink.Options) {
		o.SendAttempts, o.RetryBackoff = 100, 50*time.Millisecond
	}})
	h.proxy.Down()
	for _, email := range []string{"ada@example.com", "grace@example.com"} {
		h.user(email)
		postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {email}})
	}
	h.waitStats(func(s magiclink.Stats) bool { return s.MailRetries >= 1 })
	h.closed = true
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := h.svc.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 login emails not sent") {
		t.Errorf("Close with SMTP down = %v; want a deadline error counting 2 unsent emails", err)
	}
	if again := h.svc.Close(t.Context()); again == nil || again.Error() != err.Error() {
		t.Errorf("second Close = %v, want the first result", again)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	failed := false
	h := newHarness(t, setup{mailer: func(real magiclink.Mailer) magiclink.Mailer {
		// The first attempt fails with an error that names the recipient,
		// as SMTP servers' RCPT errors do.
		return magiclink.MailerFunc(func(ctx context.Context, m magiclink.Message) error {
			if !failed {
				failed = true
				return fmt.Errorf("550 5.1.1 <%s>: mailbox unavailable", m.To)
			}
			return real.Send(ctx, m)
		})
	}, options: func(o *magiclink.Options) { o.Workers = 1 }})
	h.user("ada@example.com")
	c := browser(t)
	link := h.signIn(c, "ada@example.com")
	sessionID := h.sessionCookie(c).Value
	postForm(t, c, h.http.URL+"/login", url.Values{"email": {"nobody@example.com"}})
	postForm(t, c, h.http.URL+"/logout", nil)
	h.waitStats(func(s magiclink.Stats) bool { return s.NoAccount == 1 })
	logs := h.logs.String()
	if !strings.Contains(logs, "…@example.com") || !strings.Contains(logs, "retrying") {
		t.Fatalf("expected debug logs with redacted addresses:\n%s", logs)
	}
	token := link[strings.Index(link, "token=")+6:]
	for what, secret := range map[string]string{
		"login token": token, "session id": sessionID, "address": "ada@example.com", "unknown address": "nobody@example.com",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the logs:\n%s", what, logs)
		}
	}
}
