package magiclink

import (
	"bytes"
	"embed"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*
var templateFiles embed.FS

// Template names, looked up first in [Options.Templates] and then among
// the embedded defaults. The default pages are framed by the templates
// "head" (from the doctype to the opening of main) and "foot", which
// Options.Templates may redefine alone.
const (
	tmplLogin   = "login.html"        // the login form ([PageData])
	tmplSent    = "sent.html"         // "check your email" ([PageData])
	tmplVerify  = "verify.html"       // the confirmation button ([PageData].Token)
	tmplInvalid = "invalid.html"      // an unknown, used or expired link ([PageData])
	tmplError   = "error.html"        // rate limits and failures ([PageData].Error)
	tmplSubject = "email_subject.txt" // the email's subject ([EmailData])
	tmplText    = "email.txt"         // the email's plain-text part ([EmailData])
	tmplHTML    = "email.html"        // the email's HTML part ([EmailData]; may be empty)

	// A verified email change ([Service.RequestEmailChange]).
	tmplChangeConfirm = "change_confirm.html"       // the confirmation button ([PageData].Token)
	tmplChangeDone    = "change_done.html"          // the address was changed ([PageData].Email)
	tmplChangeSubject = "email_change_subject.txt"  // the link to the new address ([EmailData])
	tmplChangeText    = "email_change.txt"          // its plain-text part
	tmplChangeHTML    = "email_change.html"         // its HTML part (may be empty)
	tmplNoticeSubject = "email_changed_subject.txt" // the notice to the old address ([EmailData].NewEmail)
	tmplNoticeText    = "email_changed.txt"         // its plain-text part
	tmplNoticeHTML    = "email_changed.html"        // its HTML part (may be empty)
)

var templateNames = []string{tmplLogin, tmplSent, tmplVerify, tmplInvalid, tmplError, tmplSubject, tmplText, tmplHTML,
	tmplChangeConfirm, tmplChangeDone, tmplChangeSubject, tmplChangeText, tmplChangeHTML, tmplNoticeSubject, tmplNoticeText, tmplNoticeHTML}

// mailParts names the three templates of one email: subject, plain text
// and HTML.
type mailParts struct{ subject, text, html string }

var (
	loginMail  = mailParts{tmplSubject, tmplText, tmplHTML}
	changeMail = mailParts{tmplChangeSubject, tmplChangeText, tmplChangeHTML}
	noticeMail = mailParts{tmplNoticeSubject, tmplNoticeText, tmplNoticeHTML}
)

// PageData is what the page templates are executed with.
type PageData struct {
	AppName    string
	Title      string
	Error      string // why the request was refused, fit to show
	Email      string // the address entered, on the login and sent pages
	Token      string // the login token, on the confirmation page only
	LoginPath  string // where the login form posts, and the page to ask for a new link
	VerifyPath string // where the confirmation form posts
	ChangePath string // where the email-change confirmation form posts
	CodePath   string // where the sign-in code form posts (on the sent page)
	TokenTTL   string // how long a link works, in words ("15 minutes")
}

// EmailData is what the email templates are executed with.
type EmailData struct {
	AppName string
	Email   string // the recipient
	Link    string // the login link, or the email-change link
	// Code is, in a login email, the sign-in code that works beside the
	// link in the browser that asked; "" when the link was sent without
	// one ([Service.SendLink]).
	Code     string
	TokenTTL string // how long it works, in words
	// NewEmail is, in the notice to the old address of an email change,
	// the new address, masked ("n•••@example.org").
	NewEmail string
}

type templates map[string]*template.Template

func loadTemplates(override *template.Template) (templates, error) {
	defaults, err := template.ParseFS(templateFiles, "templates/*")
	if err != nil {
		return nil, fmt.Errorf("magiclink: parsing the embedded templates: %w", err)
	}
	set := defaults
	if override != nil {
		// The overrides join the defaults' set, replacing templates of the
		// same name: a page, an email part, or the "head" and "foot" that
		// every default page is framed by.
		if set, err = defaults.Clone(); err != nil {
			return nil, err
		}
		for _, o := range override.Templates() {
			if o.Tree == nil || o.Tree.Root == nil {
				continue
			}
			if _, err := set.AddParseTree(o.Name(), o.Tree.Copy()); err != nil {
				return nil, optionsError("Templates: %s: %v", o.Name(), err)
			}
		}
	}
	t := templates{}
	for _, name := range templateNames {
		t[name] = set.Lookup(name)
	}
	// Render each once with sample data, so that a broken override is an
	// error from New rather than from the first request.
	page := PageData{AppName: "App", Title: "Title", Error: "Error", Email: "ada@example.com",
		Token: strings.Repeat("A", encodedSecretLen), LoginPath: "/login", VerifyPath: verifyPath, ChangePath: emailChangePath, CodePath: codePath, TokenTTL: "15 minutes"}
	email := EmailData{AppName: "App", Email: "ada@example.com", Link: "https://example.com/login/verify?token=A", Code: "12345678", TokenTTL: "15 minutes",
		NewEmail: "a•••@example.org"}
	for _, name := range templateNames {
		var data any = page
		if strings.HasPrefix(name, "email") {
			data = email
		}
		if _, err := t.render(name, data); err != nil {
			return nil, optionsError("Templates: %v", err)
		}
	}
	return t, nil
}

// render executes a template into a string.
func (t templates) render(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := t[name].Execute(&b, data); err != nil {
		return "", fmt.Errorf("magiclink: template %s: %w", name, err)
	}
	return b.String(), nil
}

// renderEmail builds the login email for the address and link.
func (s *Service) renderEmail(to, link, code string) (Message, error) {
	return s.renderMail(loginMail, EmailData{Email: to, Link: link, Code: code})
}

// renderMail builds an email from its templates, to d.Email; it fills in
// d's AppName and TokenTTL.
func (s *Service) renderMail(parts mailParts, d EmailData) (Message, error) {
	d.AppName, d.TokenTTL = s.opts.AppName, words(s.opts.TokenTTL)
	to := d.Email
	subject, err := s.tmpl.render(parts.subject, d)
	if err != nil {
		return Message{}, err
	}
	text, err := s.tmpl.render(parts.text, d)
	if err != nil {
		return Message{}, err
	}
	htm, err := s.tmpl.render(parts.html, d)
	if err != nil {
		return Message{}, err
	}
	subject = strings.Join(strings.Fields(html.UnescapeString(subject)), " ")
	if strings.TrimSpace(htm) == "" {
		htm = ""
	}
	return Message{From: s.opts.From, To: to, Subject: subject, Text: html.UnescapeString(text), HTML: htm}, nil
}

// page writes an HTML page with the security headers every page of this
// package carries.
func (s *Service) page(w http.ResponseWriter, status int, name string, d PageData) {
	d.AppName = s.opts.AppName
	d.LoginPath = s.opts.LoginPath
	d.VerifyPath = verifyPath
	d.ChangePath = emailChangePath
	d.CodePath = codePath
	d.TokenTTL = words(s.opts.TokenTTL)
	body, err := s.tmpl.render(name, d)
	if err != nil {
		s.logger.Error("magiclink: rendering a page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// words says a duration the way people do: "15 minutes", "1 hour",
// "10 days".
func words(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	default:
		return unit(max(int64(d/time.Second), 1), "second")
	}
}
