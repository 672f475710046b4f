// Package poller scrapes the exporters of one data centre and publishes
// every scrape, failed or not, as one envelope on the stream. It never parses
// a body: the bytes go out as scraped, compressed with snappy or zstd.
package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/stream"
)

// Options configures a Poller.
type Options struct {
	// Identity is the publisher name carried in every envelope.
	Identity string
	Targets  []config.Target
	Interval time.Duration
	// Timeout bounds one scrape; it is sent to the target in
	// X-Prometheus-Scrape-Timeout-Seconds.
	Timeout time.Duration
	// BodyLimit is the most bytes read of a scrape body.
	BodyLimit int64
	// MaxInflight bounds published, unacknowledged messages.
	MaxInflight int
	// ShutdownGrace bounds how long Run waits for outstanding
	// acknowledgements once its context ends.
	ShutdownGrace time.Duration
	// HTTPClient scrapes the targets of every job without a client in
	// HTTPClients; nil uses a client that keeps connections alive.
	HTTPClient *http.Client
	// HTTPClients maps a job to the client that scrapes its targets, built
	// by the caller from the job's HTTP client settings (TLS, credentials,
	// proxy). The scrape's context, not the client, bounds a scrape, and
	// the poller sets the headers and asks for gzip itself, so a client
	// whose transport disables compression still gets compressed transfer.
	HTTPClients map[string]*http.Client
	// UserAgent is sent with every scrape.
	UserAgent string
	// Codec compresses every body: envelope.CodecSnappy (the default when
	// zero) or envelope.CodecZstd.
	Codec envelope.Codec
}

// maxKeptBuffer is the most a target keeps of its buffers between scrapes.
const maxKeptBuffer = 4 << 20

// envelopeOverhead is room left under the server's max payload for what the
// NATS Streaming client wraps around our message (client ID, GUID, subject).
const envelopeOverhead = 1024

// Poller runs one scrape loop per target and a publisher loop.
type Poller struct {
	opts    Options
	pub     stream.Publisher
	log     *slog.Logger
	metrics *metrics
	scraper *scraper
	outbox  *outbox
	now     func() time.Time
	// zstd is set when opts.Codec is zstd. All target loops share it: an
	// encoder holds about 1 MiB of tables, and compressing one scrape
	// takes a fraction of a millisecond, so targets (which scrape at
	// staggered offsets) rarely wait for each other.
	zstd *envelope.ZstdEncoder
}

// New validates opts and registers the poller's metrics on reg.
func New(opts Options, pub stream.Publisher, logger *slog.Logger, reg prometheus.Registerer) (*Poller, error) {
	if opts.Interval <= 0 {
		return nil, errors.New("poller: scrape interval must be positive")
	}
	if opts.Timeout <= 0 || opts.Timeout > opts.Interval {
		opts.Timeout = min(opts.Interval, 10*time.Second)
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = 16 << 20
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 64
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "prometheus-streams"
	}
	var zenc *envelope.ZstdEncoder
	switch opts.Codec {
	case 0:
		opts.Codec = envelope.CodecSnappy
	case envelope.CodecSnappy:
	case envelope.CodecZstd:
		var err error
		if zenc, err = envelope.NewZstdEncoder(); err != nil {
			return nil, fmt.Errorf("poller: %w", err)
		}
	default:
		return nil, fmt.Errorf("poller: codec %s cannot be encoded", opts.Codec)
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     2 * opts.Interval,
		}}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ob := newOutbox()
	m, err := newMetrics(reg, func() float64 { return float64(ob.len()) })
	if err != nil {
		return nil, err
	}
	for _, t := range opts.Targets {
		m.initTarget(t.Job, t.Name)
	}
	return &Poller{
		opts:    opts,
		pub:     pub,
		log:     logger.With("component", "poller"),
		metrics: m,
		scraper: &scraper{client: client, clients: opts.HTTPClients, timeout: opts.Timeout, bodyLimit: opts.BodyLimit, userAgent: opts.UserAgent},
		outbox:  ob,
		now:     time.Now,
		zstd:    zenc,
	}, nil
}

// Run scrapes and publishes until ctx is done. It then stops scraping and
// waits up to ShutdownGrace for outstanding acknowledgements, so the caller
// should close the publisher's connection only after Run returns.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range p.opts.Targets {
		wg.Go(func() { p.runTarget(ctx, t) })
	}
	p.send(ctx)
	wg.Wait()
	return nil
}

// runTarget scrapes one target every interval from its stable offset.
func (p *Poller) runTarget(ctx context.Context, t config.Target) {
	log := p.log.With("job", t.Job, "instance", t.Name)
	wait := time.NewTimer(offset(p.now(), p.opts.Interval, p.opts.Identity, t.Job, t.Name, t.URL))
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return
	case <-wait.C:
	}
	ticker := time.NewTicker(p.opts.Interval)
	defer ticker.Stop()
	var body bytes.Buffer
	var compressed []byte
	lastFailed := false
	lastSize := 0
	for {
		compressed = p.scrapeOnce(ctx, t, log, &body, lastSize, compressed, &lastFailed)
		lastSize = body.Len()
		// A target that served a huge body (up to body_size_limit, or
		// more and refused) must not pin that much memory until the next
		// scrape: every target keeps its own buffers.
		if body.Cap() > maxKeptBuffer {
			body = bytes.Buffer{}
		}
		if cap(compressed) > maxKeptBuffer {
			compressed = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// compress compresses body with the configured codec, reusing dst.
func (p *Poller) compress(dst, body []byte) []byte {
	if p.zstd != nil {
		return p.zstd.Compress(dst, body)
	}
	return envelope.Compress(dst, body)
}

// scrapeOnce scrapes t, puts the resulting message in the outbox and returns
// the compression buffer for reuse.
func (p *Poller) scrapeOnce(ctx context.Context, t config.Target, log *slog.Logger, body *bytes.Buffer, sizeHint int, compressed []byte, lastFailed *bool) []byte {
	start := p.now()
	sctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	contentType, err := p.scraper.scrape(sctx, t.Job, t.URL, body, sizeHint)
	cancel()
	if ctx.Err() != nil {
		return compressed // shutting down: a cancelled scrape is not a failed target
	}
	env := envelope.Envelope{
		Job:            t.Job,
		Instance:       t.Name,
		Publisher:      p.opts.Identity,
		ScrapeStart:    start,
		ScrapeDuration: p.now().Sub(start),
		Outcome:        envelope.OutcomeSuccess,
		ContentType:    contentType,
		Codec:          p.opts.Codec,
	}
	if err == nil {
		compressed = p.compress(compressed, body.Bytes())
		env.Payload = compressed
	}
	msg, err := p.encode(&env, err)
	if err != nil {
		// Only a broken invariant gets here (a job or name the config
		// should have refused); nothing can be published for it.
		log.Error("cannot encode scrape", "err", err)
		return compressed
	}
	p.metrics.scrapeDuration.WithLabelValues(t.Job, t.Name).Set(env.ScrapeDuration.Seconds())
	p.metrics.scrapeBytes.WithLabelValues(t.Job, t.Name).Set(float64(body.Len()))
	p.metrics.messageBytes.WithLabelValues(t.Job, t.Name).Set(float64(len(msg)))
	if env.Outcome == envelope.OutcomeFailure {
		p.metrics.scrapes.WithLabelValues(t.Job, t.Name, "failure").Inc()
		// A target that stays down is logged when it goes down, not every scrape.
		level := slog.LevelDebug
		if !*lastFailed {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "scrape failed", "err", env.Error)
		*lastFailed = true
	} else {
		p.metrics.scrapes.WithLabelValues(t.Job, t.Name, "success").Inc()
		if *lastFailed {
			log.Info("scrape recovered")
		}
		*lastFailed = false
	}
	header := env
	header.Payload = nil // the message keeps the header only, to re-encode it as a failure if it must
	if p.outbox.put(&message{key: t.Job + "\x00" + t.Name, data: msg, env: header}) {
		p.metrics.replaced.Inc()
	}
	return compressed
}

// encode builds the message for env, turning scrapeErr, or a message larger
// than the stream accepts, into a failed scrape so it still reaches the
// centre as up 0 with the reason.
func (p *Poller) encode(env *envelope.Envelope, scrapeErr error) ([]byte, error) {
	if scrapeErr != nil {
		p.fail(env, scrapeErr)
	}
	msg, err := envelope.Append(make([]byte, 0, len(env.Payload)+256), env)
	if err != nil {
		return nil, err
	}
	return p.fit(env, msg)
}

// fit returns msg, or when it is larger than the connected server accepts,
// env re-encoded as a failed scrape that says so. While not connected the
// limit is unknown and msg is returned as it is; the sender checks again.
func (p *Poller) fit(env *envelope.Envelope, msg []byte) ([]byte, error) {
	limit := p.pub.MaxPayload() - envelopeOverhead
	if limit <= 0 || len(msg) <= limit {
		return msg, nil
	}
	p.fail(env, &scrapeError{reasonMessageTooLarge, fmt.Errorf(
		"scrape compressed to a %d byte message, more than the %d bytes the stream accepts (max_payload less %d bytes of framing)",
		len(msg), limit, envelopeOverhead)})
	return envelope.Append(msg[:0], env)
}

func (p *Poller) fail(env *envelope.Envelope, err error) {
	reason := reasonRead
	var se *scrapeError
	if errors.As(err, &se) {
		reason = se.reason
	}
	p.metrics.scrapeFailures.WithLabelValues(env.Job, env.Instance, reason).Inc()
	env.Outcome = envelope.OutcomeFailure
	env.Error = err.Error()
	env.Payload = nil
	env.ContentType = ""
}
