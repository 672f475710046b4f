package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/internal/backoff"
	"github.com/choria-io/prometheus-streams/internal/lograte"
)

// JSPublisher publishes each group's scrapes on a subject of its own into
// a JetStream stream that keeps one message per subject. Run keeps the
// connection up and makes sure the stream exists; Publish fails fast with
// ErrNotConnected while the connection is down.
type JSPublisher struct {
	c *jsConn
	// maxMsgSize is the stream's max_msg_size, 0 while unknown or unset.
	maxMsgSize atomic.Int64
	// warned is set once the differences of an existing stream were
	// logged: once per process, not at every look.
	warned atomic.Bool

	mu sync.Mutex
	// refused are the subjects the server refused to let us publish on
	// lately, so a publish to one that then times out is reported as
	// what it is.
	refused map[string]time.Time
	// refusals logs the refused publishes, which repeat every scrape.
	refusals *lograte.Limiter
	// recheck asks Run to look for the stream again: a publish found no
	// stream for its subject (deleted while the poller runs).
	recheck chan struct{}
}

var _ Publisher = (*JSPublisher)(nil)

// NewJSPublisher returns a publisher; nothing connects until Run. Metrics
// are registered on reg with the label role="poller".
func NewJSPublisher(opts JSOptions, logger *slog.Logger, reg prometheus.Registerer) (*JSPublisher, error) {
	c, err := newJSConn(opts, "poller", logger, reg)
	if err != nil {
		return nil, err
	}
	p := &JSPublisher{c: c, refused: map[string]time.Time{}, refusals: lograte.New(c.log, slog.LevelError), recheck: make(chan struct{}, 1)}
	c.permissions = p.permissionViolation
	return p, nil
}

// Run connects, makes sure the stream exists, and keeps the connection up
// until ctx is done; then it closes it, and publishes not yet acknowledged
// fail with ErrConnectionClosed.
func (p *JSPublisher) Run(ctx context.Context) error {
	nc, js, err := p.c.connect(ctx)
	if err != nil || nc == nil {
		return err
	}
	defer p.c.close(nc)
	// Publishing does not wait for the stream: until it exists, publishes
	// fail with ErrNoStream and the poller keeps each target's newest
	// scrape, as while NATS is unreachable.
	for {
		p.ensure(ctx, js)
		select {
		case <-ctx.Done():
			return nil
		case <-p.recheck:
			// A stream deleted under a running poller is created again
			// (when creating is on), as at start.
			if !backoff.New(p.c.opts.BackoffMin, p.c.opts.BackoffMax).Wait(ctx) {
				return nil
			}
		}
	}
}

// ensure calls ensureStream until it succeeds or ctx is done.
func (p *JSPublisher) ensure(ctx context.Context, js jetstream.JetStream) {
	b := backoff.New(p.c.opts.BackoffMin, p.c.opts.BackoffMax)
	for attempt := 1; ; attempt++ {
		err := p.ensureStream(ctx, js)
		if err == nil || ctx.Err() != nil {
			return
		}
		logRetry(ctx, p.c.log, slog.LevelError, "the stream is not usable yet, retrying", err, attempt)
		if !b.Wait(ctx) {
			return
		}
	}
}

// wantStream is the stream the publisher creates when it is missing.
func (p *JSPublisher) wantStream() jetstream.StreamConfig {
	o, s := p.c.opts, p.c.opts.Create
	cfg := jetstream.StreamConfig{
		Name:              o.Stream,
		Description:       "prometheus-streams: the newest scrape of every target",
		Subjects:          []string{o.Topic + ".>"},
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Retention:         jetstream.LimitsPolicy,
	}
	if s != nil {
		cfg.MaxAge, cfg.Storage, cfg.Replicas = s.MaxAge, s.Storage, max(s.Replicas, 1)
		cfg.MaxBytes = -1
		if s.MaxBytes > 0 {
			cfg.MaxBytes = s.MaxBytes
		}
		// The server refuses a duplicate window longer than MaxAge.
		cfg.Duplicates = 2 * time.Minute
		if s.MaxAge > 0 && s.MaxAge < cfg.Duplicates {
			cfg.Duplicates = s.MaxAge
		}
	}
	return cfg
}

// ensureStream finds the stream, or creates it when it is missing and
// creating is on. A stream that exists is used as it is: the project never
// changes a stream, and one with other settings than it would create gets
// one warning that names them.
func (p *JSPublisher) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	o := p.c.opts
	rctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	s, err := js.Stream(rctx, o.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && o.Create == nil:
		return fmt.Errorf("stream %q does not exist and %s.create_stream is false: create it (docs/configuration.md gives the nats command)", o.Stream, p.c.section)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = js.CreateStream(rctx, p.wantStream())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another poller created it first.
			s, err = js.Stream(rctx, o.Stream)
		} else if err == nil {
			p.c.log.Info("created the stream", "subjects", o.Topic+".>", "max_age", o.Create.MaxAge, "storage", o.Create.Storage.String(), "replicas", max(o.Create.Replicas, 1))
			p.maxMsgSize.Store(int64(s.CachedInfo().Config.MaxMsgSize))
			return nil
		}
		if err != nil {
			if isPermission(err) {
				return fmt.Errorf("create stream %q: the account may not (set %s.create_stream: false and create it with the nats CLI): %w", o.Stream, p.c.section, err)
			}
			return fmt.Errorf("create stream %q: %w", o.Stream, err)
		}
	case err != nil:
		return fmt.Errorf("look up stream %q: %w", o.Stream, err)
	}
	cfg := s.CachedInfo().Config
	p.maxMsgSize.Store(int64(cfg.MaxMsgSize))
	if diffs := StreamDifferences(cfg, p.wantStream(), o.Create != nil); len(diffs) > 0 && !p.warned.Swap(true) {
		p.c.log.Warn("the stream exists with other settings than this poller would create it with; using it as it is", "differences", strings.Join(diffs, "; "))
	}
	return nil
}

// StreamDifferences names the settings in which have differs from want:
// the ones that decide what the stream keeps. Without full (the stream is
// not ours to create) only the subjects and the one message per subject
// are compared.
func StreamDifferences(have, want jetstream.StreamConfig, full bool) []string {
	var d []string
	if !subjectsCover(have.Subjects, want.Subjects) && len(have.Sources) == 0 {
		d = append(d, fmt.Sprintf("subjects %v do not cover %v", have.Subjects, want.Subjects))
	}
	if have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		d = append(d, fmt.Sprintf("max_msgs_per_subject %d, not %d (older scrapes of a target are kept)", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject))
	}
	if !full {
		return d
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max_age %s, not %s", have.MaxAge, want.MaxAge))
	}
	if have.Storage != want.Storage {
		d = append(d, fmt.Sprintf("storage %s, not %s", have.Storage, want.Storage))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d, not %d", have.Replicas, want.Replicas))
	}
	if have.MaxBytes != want.MaxBytes {
		d = append(d, fmt.Sprintf("max_bytes %d, not %d", have.MaxBytes, want.MaxBytes))
	}
	return d
}

// subjectsCover reports whether have lists every subject of want.
func subjectsCover(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w || h == ">" {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Publish implements Publisher. The message carries a Nats-Msg-Id made of
// its subject and a hash of its bytes, so a publish retried after a lost
// acknowledgement is stored once.
func (p *JSPublisher) Publish(key Key, data []byte, done func(error)) error {
	_, js := p.c.current()
	if js == nil {
		return ErrNotConnected
	}
	subject := Subject(p.c.opts.Topic, key)
	h := fnv.New64a()
	_, _ = h.Write(data)
	msg := &nats.Msg{
		Subject: subject,
		// nats.go keeps the message until it is acknowledged, and the
		// caller may reuse data once Publish returns.
		Data:   bytes.Clone(data),
		Header: nats.Header{jetstream.MsgIDHeader: []string{subject + "/" + strconv.FormatUint(h.Sum64(), 16)}},
	}
	f, err := js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", subject, p.translate(subject, err))
	}
	go func() {
		select {
		case <-f.Ok():
			done(nil)
		case err := <-f.Err():
			done(p.translate(subject, err))
		case <-p.c.closed:
			done(fmt.Errorf("%w: publish to %s", ErrConnectionClosed, subject))
		}
	}()
	return nil
}

// translate maps nats.go's publish errors to this package's, keeping the
// original.
func (p *JSPublisher) translate(subject string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case p.wasRefused(subject):
		return fmt.Errorf("%w: the server refused publishing on %s (check the NATS permissions of %s): %w", ErrPermission, subject, p.c.section, err)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return fmt.Errorf("%w: %w", ErrAckTimeout, err)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		select {
		case p.recheck <- struct{}{}:
		default:
		}
		return fmt.Errorf("%w: %s (is stream %q missing, or its subjects other than %s.>?): %w", ErrNoStream, subject, p.c.opts.Stream, p.c.opts.Topic, err)
	case errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionClosed),
		// nats.go fails the publishes still unacknowledged when it
		// reconnects: the server may or may not have stored them.
		errors.Is(err, nats.ErrDisconnected):
		return fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrMaxBytesExceeded),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

// permissionViolation records a subject the server refused and says so,
// at most once a minute at error level.
func (p *JSPublisher) permissionViolation(err error) {
	// nats.go's text: nats: permissions violation for publish to "subject"
	msg := err.Error()
	subject := ""
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if j := strings.LastIndexByte(msg, '"'); j > i {
			subject = msg[i+1 : j]
		}
	}
	p.mu.Lock()
	now := time.Now()
	for s, t := range p.refused {
		if now.Sub(t) > time.Minute {
			delete(p.refused, s)
		}
	}
	if subject != "" {
		p.refused[subject] = now
	}
	p.mu.Unlock()
	p.refusals.Log("permission", "the NATS server refused a publish: the credentials may not publish on this subject (further refusals are logged at debug level for a minute, and all are counted in publish_failures_total{reason=\"permission\"})",
		"the NATS server refused a publish", "subject", subject, "err", err)
}

func (p *JSPublisher) wasRefused(subject string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.refused[subject]
	return ok
}

// MaxPayload implements Publisher: the smaller of the server's max_payload
// and the stream's max_msg_size, less room for the headers.
func (p *JSPublisher) MaxPayload() int {
	nc, _ := p.c.current()
	if nc == nil {
		return 0
	}
	limit := nc.MaxPayload()
	if s := p.maxMsgSize.Load(); s > 0 && s < limit {
		limit = s
	}
	// The Nats-Msg-Id header and the subject count against the limits too.
	return max(int(limit)-headerRoom, 0)
}

// headerRoom is what MaxPayload keeps free for a message's headers: the
// Nats-Msg-Id holds the subject, whose publisher, job and instance are up
// to envelope.MaxNameLen (1,024) bytes each before encoding and three
// times that encoded: 9 KiB, with the topic and the hash under 12.
const headerRoom = 12 << 10

// Ready implements Publisher.
func (p *JSPublisher) Ready() <-chan struct{} { return p.c.readyChan() }

// Connected reports whether the connection is up (for readiness checks).
func (p *JSPublisher) Connected() bool {
	return p.c.connected()
}
