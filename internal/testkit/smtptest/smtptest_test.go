package smtptest_test

import (
	"net/smtp"
	"strings"
	"testing"

	"github.com/apikit/apikit/internal/testkit/smtptest"
)

func send(t *testing.T, addr, to, body string) error {
	t.Helper()
	return smtp.SendMail(addr, nil, "login@example.com", []string{to}, []byte(
		"From: login@example.com\r\nTo: "+to+"\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\n"+body+"\r\n"))
}

func TestWaitLinkReturnsEachMessageOnce(t *testing.T) {
	srv := smtptest.Start(t)
	for _, tok := range []string{"first", "second"} {
		if err := send(t, srv.Addr(), "ada@example.com", "https://x.example/login/verify?token="+tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(t, srv.Addr(), "grace@example.com", "https://x.example/login/verify?token=grace"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second"} {
		if got := srv.WaitLink(t, "Ada@example.com"); !strings.HasSuffix(got, "token="+want) {
			t.Errorf("WaitLink = %q, want the %s link", got, want)
		}
	}
	if got := srv.WaitLink(t, "grace@example.com"); !strings.HasSuffix(got, "token=grace") {
		t.Errorf("WaitLink(grace) = %q", got)
	}
	if msgs := srv.Messages(); len(msgs) != 3 || msgs[0].Text != "https://x.example/login/verify?token=first\n" || msgs[0].ContentType != "text/plain" {
		t.Errorf("messages: %+v", msgs)
	}
}

func TestFailNextAndAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "p"})
	if err := send(t, srv.Addr(), "ada@example.com", "x"); err == nil || !strings.Contains(err.Error(), "authenticate") {
		t.Errorf("unauthenticated send = %v, want an authentication error", err)
	}
	auth := smtp.PlainAuth("", "u", "p", "127.0.0.1")
	srv.FailNext(1)
	msg := []byte("Subject: x\r\n\r\nx\r\n")
	if err := smtp.SendMail(srv.Addr(), auth, "a@example.com", []string{"b@example.com"}, msg); err == nil || !strings.Contains(err.Error(), "451") {
		t.Errorf("first send after FailNext(1) = %v, want 451", err)
	}
	if err := smtp.SendMail(srv.Addr(), auth, "a@example.com", []string{"b@example.com"}, msg); err != nil {
		t.Errorf("second send = %v", err)
	}
	if got := srv.Wait(t, 1)[0]; got.User != "u" {
		t.Errorf("User = %q", got.User)
	}
}
