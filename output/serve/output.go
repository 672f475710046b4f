// Package serve is the receiver's target-serving output: it holds each
// group's newest scrape, still compressed, lists every group for the central
// Prometheus's HTTP service discovery (GET /sd) and answers each group's
// scrape (GET /scrape) with the body exactly as the target served it, so
// that Prometheus scrapes every remote target through the receiver as if it
// were next to it.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/bufpool"
	"github.com/choria-io/prometheus-streams/output"
)

// Defaults for the zero values of Options. They are serve's and
// body_size_limit's, declared once in config: config imports nothing of
// ours, so the output refers to it.
const (
	// DefaultPublisherLabelName is PublisherLabelName's default.
	DefaultPublisherLabelName = config.DefaultPublisherLabelName
	// DefaultDeleteAfter is DeleteAfter's default while MaxAge is
	// shorter: a zero DeleteAfter is config.DerivedServeDeleteAfter(MaxAge).
	DefaultDeleteAfter = config.DefaultServeDeleteAfter
	// DefaultMaxGroups is MaxGroups' default.
	DefaultMaxGroups = config.DefaultServeMaxGroups
	// DefaultMaxBytes is MaxBytes' default.
	DefaultMaxBytes = config.DefaultServeMaxBytes
	// DefaultMaxConcurrentScrapes is MaxConcurrentScrapes' default.
	DefaultMaxConcurrentScrapes = config.DefaultServeMaxConcurrentScrapes
	// DefaultWriteTimeout is WriteTimeout's default.
	DefaultWriteTimeout = config.DefaultServeWriteTimeout
	// DefaultBodyLimit is BodyLimit's default.
	DefaultBodyLimit = config.DefaultBodySizeLimit
)

// Options configures an Output.
type Options struct {
	// MaxAge is how old a held scrape may get before its scrape answers
	// 503 "stale"; DeleteAfter, before its group leaves /sd and is
	// forgotten. Both count from the scrape's start at the poller.
	MaxAge, DeleteAfter time.Duration
	// PublisherLabel keeps each publisher's groups apart and labels each
	// /sd target with the publisher under PublisherLabelName.
	PublisherLabel     bool
	PublisherLabelName string
	// Address is the host:port /sd gives Prometheus to scrape the groups
	// at; "" uses the Host of the /sd request (the address Prometheus
	// reached the receiver at).
	Address string
	// Scheme is "https" when the monitor endpoint serves TLS; "" or
	// "http" otherwise.
	Scheme string
	// MaxGroups and MaxBytes bound what is held: groups, and compressed
	// bytes of bodies and names.
	MaxGroups int
	MaxBytes  int64
	// MaxConcurrentScrapes bounds the scrape requests answered at once;
	// more get 503.
	MaxConcurrentScrapes int
	// WriteTimeout bounds writing one scrape's body, so a reader too slow
	// to take it cannot hold a slot.
	WriteTimeout time.Duration
	// BodyLimit is the largest body inflated.
	BodyLimit int64
}

// Live are the settings a running Output takes from a reload.
type Live struct {
	// MaxAge and DeleteAfter are as in Options.
	MaxAge, DeleteAfter time.Duration
}

// Output holds the newest scrape of every group and serves them. Offer is
// called from the receiver; the handlers from the monitor's HTTP server;
// all are safe for concurrent use.
type Output struct {
	opts    Options
	live    atomic.Pointer[Live]
	store   *store
	slots   chan struct{}  // one token per scrape request being answered
	bufs    bufpool.Slices // bodies inflated, for a check or a scrape
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// replayed is set once the replay at start has ended.
	replayed atomic.Bool
	// sd is the last /sd document, rebuilt when the groups listed or the
	// address asked for changed.
	sdMu sync.Mutex
	sd   sdDoc
}

// New applies the defaults to the zero values of opts and registers the
// output's metrics on reg.
func New(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Output, error) {
	if opts.MaxAge <= 0 {
		return nil, errors.New("serve output: max_age must be positive")
	}
	if opts.PublisherLabelName == "" {
		opts.PublisherLabelName = DefaultPublisherLabelName
	}
	if opts.DeleteAfter <= 0 {
		opts.DeleteAfter = config.DerivedServeDeleteAfter(opts.MaxAge)
	}
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = DefaultMaxGroups
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxConcurrentScrapes <= 0 {
		opts.MaxConcurrentScrapes = DefaultMaxConcurrentScrapes
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.Scheme == "" {
		opts.Scheme = "http"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Output{
		opts:  opts,
		store: newStore(opts.MaxGroups, opts.MaxBytes),
		slots: make(chan struct{}, opts.MaxConcurrentScrapes),
		log:   logger.With("component", "serve"),
		now:   time.Now,
	}
	o.live.Store(&Live{MaxAge: opts.MaxAge, DeleteAfter: opts.DeleteAfter})
	m, err := newMetrics(reg, o)
	if err != nil {
		return nil, err
	}
	o.metrics = m
	return o, nil
}

// SetLive replaces the live settings; a zero DeleteAfter is New's default
// (config.DerivedServeDeleteAfter). Safe for concurrent use.
func (o *Output) SetLive(l Live) error {
	if l.MaxAge <= 0 {
		return errors.New("serve output: max_age must be positive")
	}
	if l.DeleteAfter <= 0 {
		l.DeleteAfter = config.DerivedServeDeleteAfter(l.MaxAge)
	}
	o.live.Store(&l)
	return nil
}

// Name implements output.Output.
func (o *Output) Name() string { return "serve" }

// Replays implements output.Output: true, so that a restarted receiver
// serves every group again within seconds. Latest-wins by scrape start
// makes a replayed scrape harmless next to a newer one.
func (o *Output) Replays() bool { return true }

// Offer implements output.Output. It holds env if it is the group's newest
// scrape, its body inflates within the body limit and there is room, and
// settles d at once: held ("") or why not. A redelivery of the scrape held
// counts as held.
func (o *Output) Offer(env *envelope.Envelope, d output.Delivery) {
	id := o.groupID(env)
	// Redeliveries and older scrapes (the replay and the durable deliver
	// the same messages after a start) are settled before the body costs
	// an inflate; put checks again under its lock.
	res := o.store.compare(id, env.ScrapeStart)
	if res == putHeld {
		if err := o.checkBody(env); err != nil {
			o.metrics.offers.WithLabelValues(offerInvalid).Inc()
			d.Done(envelope.Reason(err), fmt.Errorf("serve output: scrape of %s/%s: %w", env.Job, env.Instance, err))
			return
		}
		var err error
		if res, err = o.store.put(id, env); err != nil {
			result := offerRefusedBytes
			if errors.Is(err, ErrTooManyGroups) {
				result = offerRefusedGroups
			}
			o.metrics.offers.WithLabelValues(result).Inc()
			d.Done(output.ReasonLimit, err)
			return
		}
	}
	switch res {
	case putOlder:
		o.metrics.offers.WithLabelValues(offerSuperseded).Inc()
		d.Done(output.ReasonSuperseded, nil)
	case putSame:
		o.metrics.offers.WithLabelValues(offerRedelivered).Inc()
		d.Done("", nil)
	default:
		o.metrics.offers.WithLabelValues(offerHeld).Inc()
		d.Done("", nil)
	}
}

// checkBody inflates a successful scrape's body once, so that a body that
// would only fail at every scrape is refused now, with the reason the
// Pushgateway output gives it, instead of replacing a good scrape.
func (o *Output) checkBody(env *envelope.Envelope) error {
	if env.Outcome != envelope.OutcomeSuccess {
		return nil
	}
	buf := o.bufs.Get()
	defer o.bufs.Put(buf)
	body, err := env.Body((*buf)[:0], int(o.opts.BodyLimit))
	if err == nil {
		*buf = body
	}
	return err
}

func (o *Output) groupID(env *envelope.Envelope) groupID {
	id := groupID{job: env.Job, instance: env.Instance}
	if o.opts.PublisherLabel {
		id.publisher = env.Publisher
	}
	return id
}

// Run implements output.Output: it forgets the groups silent for longer
// than delete_after until ctx is done. Everything else happens in Offer
// and the handlers.
func (o *Output) Run(ctx context.Context) error {
	period := sweepPeriod(o.live.Load().DeleteAfter)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		live := o.live.Load()
		if n := o.store.removeBefore(o.now().Add(-live.DeleteAfter)); n > 0 {
			o.metrics.deleted.Add(float64(n))
			o.log.Info("no scrape arrived for delete_after; the groups left /sd", "groups", n, "delete_after", live.DeleteAfter)
		}
		if p := sweepPeriod(live.DeleteAfter); p != period {
			period = p
			tick.Reset(period)
		}
	}
}

// sweepPeriod is how often Run looks for groups silent past deleteAfter:
// often enough that a group leaves /sd within a quarter of it.
func sweepPeriod(deleteAfter time.Duration) time.Duration {
	return max(min(deleteAfter/4, 30*time.Second), time.Millisecond)
}

// ReplayDone implements output.Output: /sd answers from now on. Until then
// it answers 503, so a Prometheus that knew the targets keeps them (http_sd
// keeps its last good list on an error) instead of dropping the groups the
// replay has not restored yet.
func (o *Output) ReplayDone() { o.replayed.Store(true) }
