// Package poller scrapes the exporters of one data centre and publishes
// every scrape, failed or not, as one envelope on the stream. It never parses
// a body: the bytes go out as scraped, compressed with snappy or zstd.
package poller

import (
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

// Defaults of the zero fields of Options. Those the configuration also has
// are declared once, in config and stream, which the poller imports anyway.
const (
	// DefaultBodyLimit is BodyLimit's default (body_size_limit).
	DefaultBodyLimit = config.DefaultBodySizeLimit
	// DefaultMaxInflight is MaxInflight's default: the publisher's own
	// window (max_inflight), which the poller must not exceed.
	DefaultMaxInflight = stream.DefaultMaxInflight
	// DefaultShutdownGrace is ShutdownGrace's default.
	DefaultShutdownGrace = 5 * time.Second
	// DefaultUserAgent is UserAgent's default.
	DefaultUserAgent = "prometheus-streams"
)

// Options configures a Poller.
type Options struct {
	// Identity is the publisher name carried in every envelope.
	Identity string
	// Targets are the targets scraped from the start; SetTargets replaces
	// them.
	Targets  []config.Target
	Interval time.Duration
	// Timeout bounds one scrape; it is sent to the target in
	// X-Prometheus-Scrape-Timeout-Seconds. Zero, or one longer than
	// Interval, is config.DerivedScrapeTimeout(Interval).
	Timeout time.Duration
	// BodyLimit is the most bytes read of a scrape body.
	BodyLimit int64
	// MaxInflight bounds published, unacknowledged messages.
	MaxInflight int
	// ShutdownGrace bounds how long Run waits for outstanding
	// acknowledgements once its context ends.
	ShutdownGrace time.Duration
	// HTTPClient scrapes the targets of every job that is not in
	// HTTPClients and whose targets carry no HTTP client settings; nil
	// builds one from prometheus/common's defaults.
	HTTPClient *http.Client
	// HTTPClients maps a job to the client that scrapes its targets
	// whatever their settings say. Jobs not in it get a client built from
	// their targets' HTTP client settings (config.Target.HTTPClient: TLS,
	// credentials, proxy), rebuilt when SetTargets brings new settings.
	// The scrape's context, not the client, bounds a scrape, and the
	// poller sets the headers and asks for gzip itself, so a client whose
	// transport disables compression still gets compressed transfer.
	HTTPClients map[string]*http.Client
	// UserAgent is sent with every scrape.
	UserAgent string
	// Codec compresses every body: envelope.CodecSnappy (the default when
	// zero) or envelope.CodecZstd.
	Codec envelope.Codec
}

// envelopeOverhead is room left under the server's max payload for what the
// NATS Streaming client wraps around our message (client ID, GUID, subject).
const envelopeOverhead = 1024

// Poller runs one scrape loop per target and a publisher loop. Its set of
// targets and its schedule can change while it runs (SetTargets,
// SetSchedule) without touching the stream connection.
type Poller struct {
	opts    Options
	pub     stream.Publisher
	log     *slog.Logger
	metrics *metrics
	scraper *scraper
	outbox  *outbox
	buffers buffers // lent to the target loops one scrape at a time
	now     func() time.Time
	// zstd is set when opts.Codec is zstd. All target loops share it: an
	// encoder holds about 1 MiB of tables, and compressing one scrape
	// takes a fraction of a millisecond, so targets (which scrape at
	// staggered offsets) rarely wait for each other.
	zstd *envelope.ZstdEncoder

	// mu serialises changes to the running set: SetTargets, SetSchedule
	// and the start and end of Run. The loops never take it.
	mu      sync.Mutex
	loops   map[string]*loop      // by target key: the current set
	clients map[string]*jobClient // by job
	sched   schedule
	runCtx  context.Context // Run's context; nil before Run
	stopped bool            // Run is waiting for its loops: start no more
	wg      sync.WaitGroup  // the loops
}

// New validates opts and registers the poller's metrics on reg. It builds
// the HTTP clients of opts.Targets' jobs, which reads the files their
// settings name (ca_file, cert_file...): a missing one is an error.
func New(opts Options, pub stream.Publisher, logger *slog.Logger, reg prometheus.Registerer) (*Poller, error) {
	if opts.Interval <= 0 {
		return nil, errors.New("poller: scrape interval must be positive")
	}
	opts.Timeout = scrapeTimeout(opts.Interval, opts.Timeout)
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ob := newOutbox()
	m, err := newMetrics(reg, func() float64 { return float64(ob.len()) })
	if err != nil {
		return nil, err
	}
	sc := newScraper(opts)
	p := &Poller{
		opts:    opts,
		pub:     pub,
		log:     logger.With("component", "poller"),
		metrics: m,
		scraper: sc,
		outbox:  ob,
		now:     time.Now,
		zstd:    zenc,
		loops:   map[string]*loop{},
		clients: map[string]*jobClient{},
		sched:   sc.schedule(opts.Interval, opts.Timeout),
	}
	jobs := map[string][]config.Target{}
	for _, t := range opts.Targets {
		jobs[t.Job] = append(jobs[t.Job], t)
	}
	if _, err := p.SetTargets(jobs); err != nil {
		return nil, err
	}
	return p, nil
}

// scrapeTimeout is timeout, or when it is not within (0, interval]
// scrape_timeout's default for interval, by config's rule.
func scrapeTimeout(interval, timeout time.Duration) time.Duration {
	if timeout <= 0 || timeout > interval {
		return config.DerivedScrapeTimeout(interval)
	}
	return timeout
}

// target is what one target's loop keeps from one scrape to the next. It
// keeps no buffers: those are borrowed from the Poller for each scrape.
// Only the target's own loop uses it.
type target struct {
	config.Target
	key     string       // the target's outbox slot
	client  *http.Client // its job's
	log     *slog.Logger
	metrics *targetMetrics
	// lastSize is the size of the previous body, to size the next one's
	// buffer in one step when the response does not state its length.
	lastSize int
	// lastFailed is whether the previous scrape failed, so that a target
	// that stays down is logged when it goes down, not every scrape.
	lastFailed bool
}

// Run scrapes and publishes until ctx is done. It then stops scraping and
// waits up to ShutdownGrace for outstanding acknowledgements, so the caller
// should close the publisher's connection only after Run returns. Run may
// be called once.
func (p *Poller) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.runCtx != nil {
		p.mu.Unlock()
		return errors.New("poller: Run called twice")
	}
	p.runCtx = ctx
	for _, l := range p.loops {
		p.start(l)
	}
	p.mu.Unlock()
	p.send(ctx)
	p.mu.Lock()
	p.stopped = true // no loop starts after this, so wg.Wait below is final
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, jc := range p.clients {
		jc.client.CloseIdleConnections() // the keep-alive connections to the targets
	}
	return nil
}

// runTarget scrapes one target every s.interval from its stable offset.
func (p *Poller) runTarget(ctx context.Context, t *target, s schedule) {
	wait := time.NewTimer(offset(p.now(), s.interval, p.opts.Identity, t.Job, t.Name, t.URL))
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return
	case <-wait.C:
	}
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	done := make(chan struct{})
	for {
		// Each scrape runs on a goroutine of its own that ends with it. A
		// scrape (HTTP client, gzip, compression) grows a stack to tens of
		// KiB; kept by a loop that waits most of its life, that would be
		// hundreds of MiB at 10,000 targets (docs/performance.md). The
		// loop's own stack stays small, and so does the runtime's average,
		// from which it sizes new goroutines.
		go func() {
			defer func() { done <- struct{}{} }()
			p.scrapeOnce(ctx, t, s)
		}()
		<-done
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

// scrapeOnce scrapes t and puts the resulting message in the outbox. The
// buffers it borrows are back in the pool when it returns; the message does
// not alias them.
func (p *Poller) scrapeOnce(ctx context.Context, t *target, s schedule) {
	start := p.now()
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	body, contentType, err := p.scraper.scrape(sctx, t.client, s.header, t.URL, &p.buffers, t.lastSize)
	cancel()
	if body != nil {
		defer p.buffers.putBody(body)
	}
	if ctx.Err() != nil {
		return // shutting down: a cancelled scrape is not a failed target
	}
	bodyLen := 0
	if err == nil {
		bodyLen = body.Len()
		t.lastSize = bodyLen
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
	var msg []byte
	if err == nil {
		compressed := p.buffers.compression()
		*compressed = p.compress(*compressed, body.Bytes())
		env.Payload = *compressed
		msg, err = p.encode(&env, nil)
		p.buffers.putCompression(compressed)
	} else {
		msg, err = p.encode(&env, err)
	}
	if err != nil {
		// Only a broken invariant gets here (a job or name the config
		// should have refused); nothing can be published for it.
		t.log.Error("cannot encode scrape", "err", err)
		return
	}
	t.metrics.observe(env.ScrapeDuration, bodyLen, len(msg))
	p.logOutcome(ctx, t, &env)
	header := env
	header.Payload = nil // the message keeps the header only, to re-encode it as a failure if it must
	if p.outbox.put(&message{key: t.key, data: msg, env: header}) {
		p.metrics.replaced.Inc()
	}
}

// logOutcome counts the scrape by outcome and logs a target going down
// and coming back.
func (p *Poller) logOutcome(ctx context.Context, t *target, env *envelope.Envelope) {
	if env.Outcome == envelope.OutcomeFailure {
		t.metrics.failure.Inc()
		level := slog.LevelDebug
		if !t.lastFailed {
			level = slog.LevelWarn
		}
		t.log.Log(ctx, level, "scrape failed", "err", env.Error)
		t.lastFailed = true
		return
	}
	t.metrics.success.Inc()
	if t.lastFailed {
		t.log.Info("scrape recovered")
	}
	t.lastFailed = false
}

// encode builds the message for env, turning scrapeErr, or a message larger
// than the stream accepts, into a failed scrape so it still reaches the
// centre as up 0 with the reason. The message is a new slice of its exact
// size: it never aliases env.Payload, which is a borrowed buffer, and it
// lives in the outbox until the stream acknowledges it.
func (p *Poller) encode(env *envelope.Envelope, scrapeErr error) ([]byte, error) {
	if scrapeErr != nil {
		p.fail(env, scrapeErr)
	}
	msg, err := envelope.Append(nil, env)
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
