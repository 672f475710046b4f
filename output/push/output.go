// Package push is the receiver's Pushgateway output, 1.0's path: it parses
// each group's newest scrape, converts it for the Pushgateway (up added,
// timestamps removed, consistency checked against what the Pushgateway
// holds) and PUTs it, and marks down and deletes the groups that go silent.
package push

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/lograte"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// Defaults of the zero fields of Options. Those push_gateway also has are
// config's, declared there once: config imports nothing of ours, so the
// output refers to it.
const (
	// DefaultBodyLimit is BodyLimit's default (body_size_limit).
	DefaultBodyLimit = config.DefaultBodySizeLimit
	// DefaultConcurrency is Concurrency's default (concurrency).
	DefaultConcurrency = config.DefaultPushConcurrency
	// DefaultPublisherLabelName is PublisherLabelName's default
	// (publisher_label_name).
	DefaultPublisherLabelName = config.DefaultPublisherLabelName
	// DefaultPushTimeout is PushTimeout's default (timeout).
	DefaultPushTimeout = config.DefaultPushTimeout
	// DefaultRetryMin and DefaultRetryMax are RetryMin's and RetryMax's
	// defaults.
	DefaultRetryMin = 250 * time.Millisecond
	DefaultRetryMax = 10 * time.Second
)

// Options configures an Output.
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
	// current forever. A zero DownAfter is
	// config.DerivedDownAfter(MaxAge), as down_after's default is.
	DownAfter, DeleteAfter time.Duration
}

// Live are the settings a running Output takes from a reload: each is
// read where it is used, so a change applies from the next message, push
// attempt or lifecycle tick; the scrapes waiting meanwhile are judged by
// the new values.
type Live struct {
	// MaxAge, DownAfter and DeleteAfter are as in Options.
	MaxAge, DownAfter, DeleteAfter time.Duration
}

// Output pushes the scrapes offered to it to the Pushgateway.
type Output struct {
	// opts' MaxAge, DownAfter and DeleteAfter are those New was given;
	// live holds the current ones.
	opts     Options
	live     atomic.Pointer[Live]
	push     *pushgateway.Client
	log      *slog.Logger
	metrics  *metrics
	sched    *scheduler
	book     *book // the families in the Pushgateway, for the consistency check
	now      func() time.Time
	turn     *turn
	grouping grouping // the shape of the grouping keys

	// logs rate-limits what repeats for every group (keys below): push
	// failures during an outage, publisher conflicts and what the
	// consistency check leaves out every scrape, failed mark-downs and
	// deletes every lifecycle tick.
	logs *lograte.Limiter
}

// The kinds of message Output.logs rate-limits.
const (
	logPushFailed    = "push_failed"
	logConflict      = "conflict"
	logControlFailed = "control_failed"
	logLeftOut       = "left_out"
)

// New validates opts and registers the output's metrics on reg.
func New(opts Options, push *pushgateway.Client, logger *slog.Logger, reg prometheus.Registerer) (*Output, error) {
	if opts.MaxAge <= 0 {
		return nil, errors.New("push output: max_age must be positive")
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.PublisherLabelName == "" {
		opts.PublisherLabelName = DefaultPublisherLabelName
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.PushTimeout <= 0 {
		opts.PushTimeout = DefaultPushTimeout
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = config.DerivedDownAfter(opts.MaxAge)
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
	logger = logger.With("component", "push")
	r := &Output{
		grouping: newGrouping(opts),
		opts:     opts,
		push:     push,
		log:      logger,
		metrics:  m,
		sched:    sched,
		book:     newBook(),
		now:      time.Now,
		turn:     newTurn(),
		logs:     lograte.New(logger, slog.LevelWarn),
	}
	r.live.Store(&Live{MaxAge: opts.MaxAge, DownAfter: opts.DownAfter, DeleteAfter: opts.DeleteAfter})
	return r, nil
}

// SetLive replaces the live settings, with New's default for a zero
// DownAfter (config.DerivedDownAfter). Safe for concurrent use.
func (r *Output) SetLive(l Live) error {
	if l.MaxAge <= 0 {
		return errors.New("push output: max_age must be positive")
	}
	if l.DownAfter <= 0 {
		l.DownAfter = config.DerivedDownAfter(l.MaxAge)
	}
	if l.DeleteAfter < 0 {
		return errors.New("push output: delete_after must not be negative")
	}
	r.live.Store(&l)
	return nil
}

// Name implements output.Output.
func (r *Output) Name() string { return "push" }

// Replays implements output.Output: false, because after a restart the
// output cannot tell which scrape of a group it pushed last, and a replay
// could push an older scrape over a newer one.
func (r *Output) Replays() bool { return false }

// ReplayDone implements output.Output; it is never called, as the output
// does not replay.
func (r *Output) ReplayDone() {}

// Run implements output.Output: it pushes until ctx is done, then lets
// pushes under way finish (each bounded by PushTimeout) and settles them;
// whatever was not pushed stays unsettled and is delivered again on the
// next start.
func (r *Output) Run(ctx context.Context) error {
	// Before the first push: the consistency check must know what the
	// Pushgateway already holds. Scrapes arriving meanwhile wait in the
	// scheduler, latest-wins. A standby reads it when its turn begins
	// (Resync), not now: by then it would be out of date anyway.
	if r.turn.start() {
		r.seedBook(ctx)
	}
	var wg sync.WaitGroup
	for range r.opts.Concurrency {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Go(func() { r.lifecycle(ctx) })
	wg.Wait()
	return nil
}

// Resync begins this receiver's turn as the Pushgateway's writer after
// another one (a JetStream failover): the consistency check forgets what
// it knew and reads the Pushgateway again, and the groups watched are read
// again, so what the other one pushed, changed or deleted since this
// receiver started is known, and pushes wait until it is. It returns at
// once: the read runs beside the deliveries, which queue meanwhile. A turn
// that begins before Run started needs no read of its own: Run's first
// read is it.
func (r *Output) Resync(ctx context.Context) {
	done, read := r.turn.begin()
	if !read {
		done()
		return
	}
	r.log.Info("this receiver takes over the Pushgateway: reading what it holds again")
	go func() {
		defer done()
		r.book.reset()
		r.seedBook(ctx)
	}()
}

// WaitForTurn makes the output a standby until Resync begins its turn: it
// pushes, marks down and deletes nothing meanwhile. A JetStream receiver
// starts so, as the receivers of one configuration share the Pushgateway.
func (r *Output) WaitForTurn() { r.turn.end() }

// Stop ends this receiver's turn as the Pushgateway's writer (a JetStream
// receiver lost the shared consumer to another): scrapes it still holds
// are not pushed but left unsettled, for the server to deliver again to
// the receiver whose turn it is.
func (r *Output) Stop() {
	r.turn.end()
	r.log.Info("this receiver is no longer the Pushgateway's writer: what it holds is left to the active receiver")
}

// Offer implements output.Output: it queues the scrape for its group,
// latest-wins. It never blocks: pushing happens in the workers.
func (r *Output) Offer(env *envelope.Envelope, d output.Delivery) {
	key := r.grouping.key(groupValues{env.Job, env.Instance, env.Publisher})
	id := key.Path()
	for _, old := range r.sched.offer(id, key, &item{env: env, msgs: []output.Delivery{d}}) {
		settle(old.msgs, output.ReasonSuperseded, nil)
	}
	if prev := r.sched.swapPublisher(id, env.Publisher); prev != "" && prev != env.Publisher {
		r.conflict(key, prev, env.Publisher)
	}
}

// conflict records two publishers writing the same group, which happens
// without publisher_label when two DCs scrape a target of the same job and
// instance name: they overwrite each other's scrapes.
func (r *Output) conflict(key pushgateway.GroupingKey, previous, publisher string) {
	r.metrics.conflicts.Inc()
	r.logs.Log(logConflict,
		"two publishers write the same group and overwrite each other; set push_gateway.publisher_label or rename the targets (further conflicts are logged at debug level for a minute)",
		"publisher conflict", "group", key, "publisher", publisher, "previous_publisher", previous)
}

// settle settles the deliveries of one scrape: reason "" when it was
// pushed, else why it was let go (err, when not nil, says more).
func settle(msgs []output.Delivery, reason string, err error) {
	for _, d := range msgs {
		d.Done(reason, err)
	}
}

// work pushes scrapes until ctx is done. Once it is, the worker stops
// taking groups even if some are queued: they stay unacknowledged and come
// again after the restart, so shutdown takes one push at most.
func (r *Output) work(ctx context.Context) {
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
	r    *Output
	body []byte
	out  bytes.Buffer
	chk  *checker // created on first use
}
