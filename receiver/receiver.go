// Package receiver consumes scrapes from the stream, validates them and
// hands each to the receiver's outputs (the Pushgateway, the targets served
// to Prometheus). A message is acknowledged only once every output has
// settled it: taken, superseded by a newer scrape, or deliberately dropped.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/lograte"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/stream"
)

// Options configures a Receiver.
type Options struct {
	// MaxAge is how old a scrape may get before it is dropped instead of
	// handed on, and the window replayed at start to the outputs that
	// replay (output.Output.Replays).
	MaxAge time.Duration
	// Publishers, when not nil, is the allow-list of publishers and the
	// jobs each may write (an empty list: any job).
	Publishers map[string][]string
}

// Live are the settings a running Receiver takes from a reload; each
// applies from the next message.
type Live struct {
	// MaxAge and Publishers are as in Options.
	MaxAge     time.Duration
	Publishers map[string][]string
}

// Route is one subscription and the outputs it feeds. A receiver has one
// route on NATS Streaming (one durable for every output); on JetStream the
// Pushgateway output shares a pinned consumer with the other receivers while
// the serving output follows the stream alone, so each has its own.
type Route struct {
	Sub     stream.Subscriber
	Outputs []output.Output
}

// Receiver moves scrapes from its subscriptions to their outputs.
type Receiver struct {
	live     atomic.Pointer[Live]
	routes   []Route
	outs     []output.Output // every route's
	log      *slog.Logger
	metrics  *metrics
	now      func() time.Time
	stopping atomic.Bool
	// logs rate-limits drops per output and reason, so hostile input
	// cannot flood the log.
	logs *lograte.Limiter
}

// New validates opts and registers the receiver's metrics on reg. outs are
// the outputs every accepted scrape of sub is offered to, at least one.
func New(opts Options, sub stream.Subscriber, outs []output.Output, logger *slog.Logger, reg prometheus.Registerer) (*Receiver, error) {
	return NewRoutes(opts, []Route{{Sub: sub, Outputs: outs}}, logger, reg)
}

// NewRoutes is New for a receiver with several subscriptions, each feeding
// outputs of its own.
func NewRoutes(opts Options, routes []Route, logger *slog.Logger, reg prometheus.Registerer) (*Receiver, error) {
	if opts.MaxAge <= 0 {
		return nil, errors.New("receiver: max_age must be positive")
	}
	var outs []output.Output
	for _, rt := range routes {
		if len(rt.Outputs) == 0 {
			return nil, errors.New("receiver: a subscription without outputs")
		}
		outs = append(outs, rt.Outputs...)
	}
	if len(outs) == 0 {
		return nil, errors.New("receiver: no output (push_gateway or serve_targets)")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	names := make([]string, len(outs))
	for i, o := range outs {
		names[i] = o.Name()
	}
	m, err := newMetrics(reg, names)
	if err != nil {
		return nil, err
	}
	logger = logger.With("component", "receiver")
	r := &Receiver{
		routes:  routes,
		outs:    outs,
		log:     logger,
		metrics: m,
		now:     time.Now,
		logs:    lograte.New(logger, slog.LevelWarn),
	}
	r.live.Store(&Live{MaxAge: opts.MaxAge, Publishers: opts.Publishers})
	return r, nil
}

// SetLive replaces the live settings. Publishers nil accepts every
// publisher. The caller must not modify l.Publishers afterwards. Safe for
// concurrent use.
func (r *Receiver) SetLive(l Live) error {
	if l.MaxAge <= 0 {
		return errors.New("receiver: max_age must be positive")
	}
	r.live.Store(&l)
	return nil
}

// Run receives until ctx is done. Then it stops taking new scrapes, lets
// the outputs finish what is under way (and acknowledges what they
// settle), and closes the subscription; whatever was not settled stays
// unacknowledged and is delivered again on the next start.
func (r *Receiver) Run(ctx context.Context) error {
	// The subscription outlives ctx so the outputs can still settle the
	// work they finish during shutdown.
	subCtx, cancelSub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSub()
	subErr := make(chan error, len(r.routes))
	for _, rt := range r.routes {
		go func() { subErr <- rt.Sub.Subscribe(subCtx, func(m stream.Message) { r.handle(rt.Outputs, m) }) }()
	}

	// An output that fails stops the receiver, as the end of ctx does.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, len(r.outs))
	for i, o := range r.outs {
		wg.Go(func() {
			if err := o.Run(runCtx); err != nil {
				errs[i] = fmt.Errorf("%s output: %w", o.Name(), err)
				stop()
			}
		})
	}
	for _, rt := range r.routes {
		wg.Go(func() { r.replay(runCtx, rt) })
	}
	ended := 0
	var subErrs []error
	select {
	case <-runCtx.Done():
	case err := <-subErr:
		// A subscription ended by itself: its outputs get nothing more.
		ended, subErrs = 1, append(subErrs, err)
		stop()
	}
	r.stopping.Store(true)
	wg.Wait()
	cancelSub()
	for ; ended < len(r.routes); ended++ {
		subErrs = append(subErrs, <-subErr)
	}
	return errors.Join(append(errs, subErrs...)...)
}

// maxClockSkew is how far in the future a scrape may start (the poller's
// clock ahead of ours) before it is refused.
const maxClockSkew = 30 * time.Second

// handle is called by the subscription for every delivery. It decides
// quickly and never blocks: the outputs do their work elsewhere.
func (r *Receiver) handle(outs []output.Output, m stream.Message) {
	r.metrics.received.Inc()
	if r.stopping.Load() {
		return // not acknowledged: redelivered after the restart
	}
	env, reason, err := r.accept(m.Data(), false)
	if reason == "" {
		reason, err = bound(m, env)
	}
	if reason != "" {
		r.drop(m, reason, err)
		return
	}
	d := &delivery{r: r, m: m}
	d.pending.Store(int32(len(outs)))
	for _, o := range outs {
		o.Offer(env, outDelivery{d: d, out: o.Name()})
	}
}

// accept decodes and checks one message: it returns the scrape, or the
// reason (and error, for the log) it is dropped for. A replayed message is
// left out of the metrics of arriving messages: the durable delivers (or
// delivered) it too.
func (r *Receiver) accept(data []byte, replayed bool) (*envelope.Envelope, string, error) {
	env, err := envelope.Decode(data)
	if err != nil {
		return nil, envelope.Reason(err), err
	}
	age := r.now().Sub(env.ScrapeStart)
	if !replayed {
		if env.Legacy {
			r.metrics.legacyMessages.Inc()
		}
		r.metrics.messageAge.Observe(max(age, 0).Seconds())
	}
	if age > r.live.Load().MaxAge {
		return nil, output.ReasonStale, nil
	}
	if -age > maxClockSkew {
		// Handed on, it would make every real scrape of its group look
		// older and be superseded until the clock caught up.
		return nil, dropFuture, fmt.Errorf("scrape of %s/%s by %q starts %v in the future: check the poller's clock",
			env.Job, env.Instance, env.Publisher, (-age).Round(time.Second))
	}
	if reason, err := r.allowed(env); err != nil {
		return nil, reason, err
	}
	return env, "", nil
}

// allowed applies the publishers allow-list: it keeps unknown publishers
// and jobs out of the outputs. It trusts the publisher the envelope names;
// NATS Streaming cannot bind that field to a connection's credentials, so
// a DC that can publish at all can still claim another DC's identity.
func (r *Receiver) allowed(env *envelope.Envelope) (reason string, err error) {
	publishers := r.live.Load().Publishers
	if publishers == nil {
		return "", nil
	}
	jobs, ok := publishers[env.Publisher]
	switch {
	case !ok:
		return dropPublisherNotAllowed, fmt.Errorf("publisher %q is not in publishers", env.Publisher)
	case len(jobs) > 0 && !slices.Contains(jobs, env.Job):
		return dropJobNotAllowed, fmt.Errorf("publisher %q may not write job %q (publishers.%s lists %v)", env.Publisher, env.Job, env.Publisher, jobs)
	}
	return "", nil
}

// bound refuses a scrape whose envelope names another publisher than the
// one the transport binds the message to. With JetStream that is the
// subject, which a DC's NATS credentials can be limited to, so a DC cannot
// write another DC's groups however it fills the envelope.
func bound(m stream.Message, env *envelope.Envelope) (reason string, err error) {
	p, ok := m.Publisher()
	if !ok || p == env.Publisher {
		return "", nil
	}
	return dropPublisherMismatch, fmt.Errorf("scrape of %s/%s names publisher %q but was published as %q: check the poller's publisher and its NATS permissions",
		env.Job, env.Instance, env.Publisher, p)
}

// drop settles a message no output is offered, counts it by reason and
// logs it. A message that can never be taken (unreadable, or lying about
// its publisher) is terminated, so the server stops delivering it; the
// rest are acknowledged.
func (r *Receiver) drop(m stream.Message, reason string, err error) {
	r.metrics.dropped.WithLabelValues(reason).Inc()
	if reason == dropPublisherMismatch || slices.Contains(envelope.Reasons(), reason) {
		r.term(m)
	} else {
		r.ack(m)
	}
	r.logDrop("", reason, err)
}

// term terminates one delivery; the server delivers it no more.
func (r *Receiver) term(m stream.Message) {
	if err := m.Term(); err == nil {
		r.metrics.acked.Inc()
	} else {
		r.metrics.ackFailures.Inc()
		r.log.Debug("terminating a message failed; the message will be delivered again", "err", err)
	}
}

// logDrop logs a drop, at most once a minute per output and reason at
// warning level and otherwise at debug level. out is the output that let
// the scrape go, "" for the receiver itself.
func (r *Receiver) logDrop(out, reason string, err error) {
	if err == nil {
		r.log.Debug("message dropped", "output", out, "reason", reason)
		return
	}
	key := out + "/" + reason
	if out == "" {
		r.logs.Log(key, "message dropped (further drops for this reason are logged at debug level for a minute)",
			"message dropped", "reason", reason, "err", err)
		return
	}
	r.logs.Log(key, "an output let a scrape go (further ones for this reason are logged at debug level for a minute)",
		"message dropped", "output", out, "reason", reason, "err", err)
}

// ack acknowledges one delivery.
func (r *Receiver) ack(m stream.Message) {
	if err := m.Ack(); err == nil {
		r.metrics.acked.Inc()
	} else {
		r.metrics.ackFailures.Inc()
		r.log.Debug("acknowledgement failed; the message will be delivered again", "err", err)
	}
}

// delivery is one message offered to every output: it is acknowledged once
// the last of them settles it.
type delivery struct {
	r       *Receiver
	m       stream.Message
	pending atomic.Int32

	mu     sync.Mutex
	taken  bool   // some output has the scrape
	reason string // the first reason an output let it go for
}

// settle records one output's outcome and acknowledges the message after
// the last one. It counts the message as dropped only when no output took
// it: a scrape the Pushgateway refused but the serving output holds was
// not lost.
func (d *delivery) settle(out, reason string, err error) {
	if reason != "" {
		d.r.metrics.outputDrops.WithLabelValues(out, reason).Inc()
		d.r.logDrop(out, reason, err)
	}
	d.mu.Lock()
	if reason == "" {
		d.taken = true
	} else if d.reason == "" {
		d.reason = reason
	}
	taken, first := d.taken, d.reason
	d.mu.Unlock()
	if d.pending.Add(-1) != 0 {
		return
	}
	if !taken {
		d.r.metrics.dropped.WithLabelValues(first).Inc()
	}
	d.r.ack(d.m)
}

// outDelivery is a delivery as one output sees it.
type outDelivery struct {
	d   *delivery
	out string
}

// Done implements output.Delivery.
func (o outDelivery) Done(reason string, err error) { o.d.settle(o.out, reason, err) }
