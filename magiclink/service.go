package magiclink

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apikit/apikit/internal/loopback"
)

// Service is passwordless sign-in: it emails login links, turns a followed
// link into a browser session, and authenticates requests by their session
// cookie. Create one with [New]; it is safe for concurrent use. It runs
// background goroutines that send email; call [Service.Close] at shutdown.
type Service struct {
	store  Store
	opts   Options
	logger *slog.Logger
	tmpl   templates
	cookie string // cookie name

	cop    *http.CrossOriginProtection
	blocks blockList // clients refused by VerifyLimiter, until when

	queue     chan mailJob
	mu        sync.RWMutex // guards closed against sends on queue
	closed    bool
	pendingMu sync.Mutex
	pending   map[string]int  // queued jobs per client
	baseCtx   context.Context // cancelled when Close gives up waiting
	cancel    context.CancelFunc
	workers   sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error

	stats counters
}

// New returns a Service over st and starts its mail workers. It returns an
// error wrapping [ErrInvalidOptions] if the options are unusable.
func New(st Store, opts Options) (*Service, error) {
	if st == nil {
		return nil, optionsError("nil Store")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpl, err := loadTemplates(o.Templates)
	if err != nil {
		return nil, err
	}
	s := &Service{
		store:  st,
		opts:   o,
		logger: o.Logger,
		tmpl:   tmpl,
		cookie: "__Host-session",
		queue:  make(chan mailJob, o.QueueSize),
		stop:   make(chan struct{}),
		cop:    http.NewCrossOriginProtection(),
		blocks: blockList{until: make(map[string]time.Time), max: maxBlocked},

		pending: make(map[string]int),
	}
	for _, origin := range o.TrustedOrigins {
		if err := s.cop.AddTrustedOrigin(origin); err != nil {
			return nil, optionsError("TrustedOrigins: %v", err)
		}
	}
	if s.opts.ErrorHandler == nil {
		s.opts.ErrorHandler = s.WriteError
	}
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stats.crossOrigin.Add(1)
		s.refuse(w, r, refusal(ErrCrossOrigin, ""))
	}))
	if o.InsecureCookies {
		s.cookie = "session"
		s.logger.Warn("magiclink: InsecureCookies is set: the session cookie is sent over plain HTTP; use it only for local development")
	} else if strings.HasPrefix(o.BaseURL, "http://") && !loopback.URL(o.BaseURL) {
		s.logger.Warn("magiclink: BaseURL is plain http on a host other than localhost: browsers will not keep the Secure session cookie; use https (or InsecureCookies for development)")
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	for range o.Workers {
		s.workers.Add(1)
		go s.mailWorker()
	}
	if o.CleanupInterval > 0 {
		s.workers.Add(1)
		go s.cleaner()
	}
	return s, nil
}

// Close stops accepting login requests, sends the emails still queued, and
// stops the background goroutines. If ctx ends first, it abandons the
// remaining emails (cancelling the one being sent) and returns an error
// that says how many were not sent. Close is safe to call more than once;
// later calls return the first call's result.
func (s *Service) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue) // workers drain it, then exit
		close(s.stop)
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
			if n := s.stats.mailAbandoned.Load(); n > 0 {
				s.closeErr = fmt.Errorf("magiclink: closing: %d login emails not sent: %w", n, ctx.Err())
			}
		}
		s.cancel()
	})
	return s.closeErr
}
