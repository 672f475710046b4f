// Package receiver consumes scrapes from the stream and pushes each group's
// newest one to the Pushgateway. A message is acknowledged only once its
// scrape is pushed, superseded by a newer one, or deliberately dropped.
package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/stream"
)

// Options configures a Receiver.
type Options struct {
	// MaxAge is how old a scrape may get before it is dropped instead of
	// pushed (and the bound on retrying a failed push).
	MaxAge time.Duration
	// BodyLimit is the largest decompressed body accepted.
	BodyLimit int64
	// Concurrency is the number of pushes in flight at once.
	Concurrency int
	// PublisherLabel adds the publisher to the grouping key under
	// PublisherLabelName, so each DC's groups stay apart.
	PublisherLabel     bool
	PublisherLabelName string
	// RetryMin and RetryMax bound the backoff between push attempts.
	RetryMin, RetryMax time.Duration
	// PushTimeout bounds a push that is still running when Run's context
	// ends, so shutdown finishes it instead of abandoning it halfway.
	PushTimeout time.Duration
	// DownAfter is how long a group may go without a new scrape before it
	// is replaced with up 0; DeleteAfter, before it is deleted from the
	// Pushgateway (0: never). The Pushgateway never forgets a group by
	// itself, so without these a target that disappeared would look
	// current forever.
	DownAfter, DeleteAfter time.Duration
	// Publishers, when not nil, is the allow-list of publishers and the
	// jobs each may write (an empty list: any job).
	Publishers map[string][]string
}

// Live are the settings a running Receiver takes from a reload: each is
// read where it is used, so a change applies from the next message, push
// attempt or lifecycle tick; the scrapes waiting meanwhile are judged by
// the new values.
type Live struct {
	// MaxAge, DownAfter, DeleteAfter and Publishers are as in Options.
	MaxAge, DownAfter, DeleteAfter time.Duration
	Publishers                     map[string][]string
}

// Receiver moves scrapes from a Subscriber to the Pushgateway.
type Receiver struct {
	// opts' MaxAge, DownAfter, DeleteAfter and Publishers are those New was
	// given; live holds the current ones.
	opts     Options
	live     atomic.Pointer[Live]
	sub      stream.Subscriber
	push     *pushgateway.Client
	log      *slog.Logger
	metrics  *metrics
	sched    *scheduler
	book     *book // the families in the Pushgateway, for the consistency check
	now      func() time.Time
	stopping atomic.Bool
	// groupLabels are the grouping key's label names besides job.
	groupLabels []string

	logMu    sync.Mutex
	logEvery map[string]*rate.Sometimes // per drop reason, so hostile input cannot flood the log
	// pushFailLog rate-limits push failures: during a Pushgateway outage
	// every group fails every interval.
	pushFailLog rate.Sometimes
	// conflictLog rate-limits publisher conflicts, which repeat every scrape.
	conflictLog rate.Sometimes
	// controlFailLog rate-limits failed mark-downs and deletes, which every
	// silent group repeats every lifecycle tick while the Pushgateway is away.
	controlFailLog rate.Sometimes
	// clashLog rate-limits what the consistency check leaves out, which
	// repeats every scrape of the offending targets.
	clashLog rate.Sometimes
}

// New validates opts and registers the receiver's metrics on reg.
func New(opts Options, sub stream.Subscriber, push *pushgateway.Client, logger *slog.Logger, reg prometheus.Registerer) (*Receiver, error) {
	if opts.MaxAge <= 0 {
		return nil, errors.New("receiver: max_age must be positive")
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = 16 << 20
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.PublisherLabelName == "" {
		opts.PublisherLabelName = "publisher"
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 250 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 10 * time.Second
	}
	if opts.PushTimeout <= 0 {
		opts.PushTimeout = 10 * time.Second
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = 2 * opts.MaxAge
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sched := newScheduler()
	m, err := newMetrics(reg, gauges{
		waiting: func() float64 { return float64(sched.waiting()) },
		groups:  func() float64 { return float64(sched.size()) },
		lag:     func() float64 { return sched.lag().Seconds() },
	})
	if err != nil {
		return nil, err
	}
	groupLabels := []string{"job", "instance"}
	if opts.PublisherLabel {
		groupLabels = append(groupLabels, opts.PublisherLabelName)
	}
	r := &Receiver{
		groupLabels:    groupLabels,
		opts:           opts,
		sub:            sub,
		push:           push,
		log:            logger.With("component", "receiver"),
		metrics:        m,
		sched:          sched,
		book:           newBook(),
		now:            time.Now,
		logEvery:       map[string]*rate.Sometimes{},
		pushFailLog:    rate.Sometimes{Interval: time.Minute},
		conflictLog:    rate.Sometimes{Interval: time.Minute},
		controlFailLog: rate.Sometimes{Interval: time.Minute},
		clashLog:       rate.Sometimes{Interval: time.Minute},
	}
	r.live.Store(&Live{MaxAge: opts.MaxAge, DownAfter: opts.DownAfter, DeleteAfter: opts.DeleteAfter, Publishers: opts.Publishers})
	return r, nil
}

// SetLive replaces the live settings, with New's defaults for zero ones
// (DownAfter twice MaxAge). Publishers nil accepts every publisher. The
// caller must not modify l.Publishers afterwards. Safe for concurrent use.
func (r *Receiver) SetLive(l Live) error {
	if l.MaxAge <= 0 {
		return errors.New("receiver: max_age must be positive")
	}
	if l.DownAfter <= 0 {
		l.DownAfter = 2 * l.MaxAge
	}
	if l.DeleteAfter < 0 {
		return errors.New("receiver: delete_after must not be negative")
	}
	r.live.Store(&l)
	return nil
}

// Run receives and pushes until ctx is done. Then it stops taking new
// scrapes, lets pushes under way finish (each bounded by PushTimeout) and
// acknowledges them, and closes the subscription; whatever was not pushed
// stays unacknowledged and is delivered again on the next start.
func (r *Receiver) Run(ctx context.Context) error {
	// The subscription outlives ctx so the workers can still acknowledge
	// the pushes they finish during shutdown.
	subCtx, cancelSub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSub()
	subErr := make(chan error, 1)
	go func() { subErr <- r.sub.Subscribe(subCtx, r.handle) }()

	// Before the first push: the consistency check must know what the
	// Pushgateway already holds. Scrapes arriving meanwhile wait in the
	// scheduler, latest-wins.
	r.seedBook(ctx)
	var wg sync.WaitGroup
	for range r.opts.Concurrency {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Go(func() { r.lifecycle(ctx) })
	<-ctx.Done()
	r.stopping.Store(true)
	wg.Wait()
	cancelSub()
	return <-subErr
}

// maxClockSkew is how far in the future a scrape may start (the poller's
// clock ahead of ours) before it is refused.
const maxClockSkew = 30 * time.Second

// handle is called by the subscription for every delivery. It decides
// quickly and never blocks: pushing happens in the workers.
func (r *Receiver) handle(m stream.Message) {
	r.metrics.received.Inc()
	if r.stopping.Load() {
		return // not acknowledged: redelivered after the restart
	}
	env, err := envelope.Decode(m.Data())
	if err != nil {
		r.drop(m, envelope.Reason(err), err)
		return
	}
	if env.Legacy {
		r.metrics.legacyMessages.Inc()
	}
	now := r.now()
	age := now.Sub(env.ScrapeStart)
	r.metrics.messageAge.Observe(max(age, 0).Seconds())
	if age > r.live.Load().MaxAge {
		r.drop(m, dropStale, nil)
		return
	}
	if -age > maxClockSkew {
		// Pushed, it would make every real scrape of its group look older
		// and be superseded until the clock caught up.
		r.drop(m, dropFuture, fmt.Errorf("scrape of %s/%s by %q starts %v in the future: check the poller's clock",
			env.Job, env.Instance, env.Publisher, (-age).Round(time.Second)))
		return
	}
	if reason, err := r.allowed(env); err != nil {
		r.drop(m, reason, err)
		return
	}
	key := r.groupingKey(env)
	id := key.Path()
	for _, old := range r.sched.offer(id, key, &item{env: env, msgs: []stream.Message{m}}) {
		r.ack(dropSuperseded, old.msgs)
	}
	if prev := r.sched.swapPublisher(id, env.Publisher); prev != "" && prev != env.Publisher {
		r.conflict(key, prev, env.Publisher)
	}
}

// allowed applies the publishers allow-list: it keeps unknown publishers
// and jobs out of the Pushgateway. It trusts the publisher the envelope
// names; NATS cannot bind that field to a connection's credentials, so a
// DC that can publish at all can still claim another DC's identity.
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

// conflict records two publishers writing the same group, which happens
// without publisher_label when two DCs scrape a target of the same job and
// instance name: they overwrite each other's scrapes.
func (r *Receiver) conflict(key pushgateway.GroupingKey, previous, publisher string) {
	r.metrics.conflicts.Inc()
	r.conflictLog.Do(func() {
		r.log.Warn("two publishers write the same group and overwrite each other; set push_gateway.publisher_label or rename the targets (further conflicts are logged at debug level for a minute)",
			"group", key, "publisher", publisher, "previous_publisher", previous)
	})
	r.log.Debug("publisher conflict", "group", key, "publisher", publisher, "previous_publisher", previous)
}

func (r *Receiver) groupingKey(env *envelope.Envelope) pushgateway.GroupingKey {
	key := pushgateway.GroupingKey{Job: env.Job, Labels: []pushgateway.Label{{Name: "instance", Value: env.Instance}}}
	if r.opts.PublisherLabel {
		key.Labels = append(key.Labels, pushgateway.Label{Name: r.opts.PublisherLabelName, Value: env.Publisher})
	}
	return key
}

// drop acknowledges a message that will not be pushed, counts it by reason
// and logs it, at most once a minute per reason at warning level.
func (r *Receiver) drop(m stream.Message, reason string, err error) {
	r.dropAll([]stream.Message{m}, reason, err)
}

// dropAll is drop for the deliveries of one scrape.
func (r *Receiver) dropAll(msgs []stream.Message, reason string, err error) {
	r.ack(reason, msgs)
	if err == nil {
		r.log.Debug("message dropped", "reason", reason)
		return
	}
	r.logMu.Lock()
	every := r.logEvery[reason]
	if every == nil {
		every = &rate.Sometimes{Interval: time.Minute}
		r.logEvery[reason] = every
	}
	r.logMu.Unlock()
	logged := false
	every.Do(func() {
		logged = true
		r.log.Warn("message dropped (further drops for this reason are logged at debug level for a minute)", "reason", reason, "err", err)
	})
	if !logged {
		r.log.Debug("message dropped", "reason", reason, "err", err)
	}
}

// ack acknowledges deliveries; reason, when set, counts them as dropped.
func (r *Receiver) ack(reason string, msgs []stream.Message) {
	for _, m := range msgs {
		if reason != "" {
			r.metrics.dropped.WithLabelValues(reason).Inc()
		}
		if err := m.Ack(); err == nil {
			r.metrics.acked.Inc()
		} else {
			r.metrics.ackFailures.Inc()
			r.log.Debug("acknowledgement failed; the message will be delivered again", "err", err)
		}
	}
}

// work pushes scrapes until ctx is done. Once it is, the worker stops
// taking groups even if some are queued: they stay unacknowledged and come
// again after the restart, so shutdown takes one push at most.
func (r *Receiver) work(ctx context.Context) {
	w := &worker{r: r}
	for ctx.Err() == nil {
		g, it := r.sched.next(ctx)
		if g == nil {
			return
		}
		w.process(ctx, g, it)
	}
}

// worker holds one push worker's buffers, reused across scrapes.
type worker struct {
	r    *Receiver
	body []byte
	out  bytes.Buffer
	chk  *checker // created on first use
}
