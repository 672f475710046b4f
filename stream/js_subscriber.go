package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/internal/backoff"
)

// JSSubscriber consumes a stream through a durable pull consumer with
// explicit acknowledgements that every receiver of one configuration
// shares. The consumer is pinned (a priority group with the pinned client
// policy, nats-server 2.11 and later): the server delivers to one receiver
// at a time, and hands the consumer to a standby once the active one has
// not pulled for PinnedTTL. So one receiver writes the Pushgateway, and a
// killed one's place is taken within PinnedTTL plus a pull.
type JSSubscriber struct {
	c       *jsConn
	metrics *jsSubMetrics

	mu    sync.Mutex
	pinID string // the pin this receiver holds, "" while standby
	// outstanding are the deliveries of this turn not yet settled.
	outstanding map[*jsMsg]struct{}
}

var _ Subscriber = (*JSSubscriber)(nil)

// NewJSSubscriber returns a subscriber; nothing connects until Subscribe.
// Metrics are registered on reg with the label role="receiver".
func NewJSSubscriber(opts JSOptions, logger *slog.Logger, reg prometheus.Registerer) (*JSSubscriber, error) {
	c, err := newJSConn(opts, "receiver", logger, reg)
	if err != nil {
		return nil, err
	}
	m, err := newJSSubMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"role": "receiver"}, reg))
	if err != nil {
		return nil, err
	}
	s := &JSSubscriber{c: c, metrics: m, outstanding: map[*jsMsg]struct{}{}}
	c.down = func() { s.lostPin(errors.New("the connection to NATS was lost")) }
	return s, nil
}

// lostPin ends this receiver's turn: the server pinned another one (or
// will, as the connection went). The deliveries of the turn not yet
// settled are handed back (Nak) so the active receiver gets them at once,
// and the output is told to push none of them: the active one may already
// have pushed newer scrapes of their groups.
func (s *JSSubscriber) lostPin(why error) {
	s.mu.Lock()
	had := s.pinID != ""
	s.pinID = ""
	back := make([]*jsMsg, 0, len(s.outstanding))
	for m := range s.outstanding {
		back = append(back, m)
	}
	clear(s.outstanding)
	s.mu.Unlock()
	if !had {
		return
	}
	if s.c.opts.OnInactive != nil {
		s.c.opts.OnInactive()
	}
	for _, m := range back {
		m.giveBack()
	}
	s.c.log.Warn("this receiver is no longer the active one of the consumer", "consumer", s.c.opts.Consumer, "reason", why, "handed_back", len(back))
}

// ConsumerConfig is the durable consumer the receivers share.
func (s *JSSubscriber) ConsumerConfig() jetstream.ConsumerConfig {
	o := s.c.opts
	return jetstream.ConsumerConfig{
		Durable:     o.Consumer,
		Description: "prometheus-streams receivers: the Pushgateway output",
		// With one message per subject, "all" is the newest scrape of
		// every target the stream holds.
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        o.AckWait,
		MaxAckPending:  o.MaxInflight,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      o.PinnedTTL,
		PriorityGroups: []string{PriorityGroup},
	}
}

// Subscribe implements Subscriber. It creates the consumer when it is
// missing (also when it is deleted while consuming), and rides out
// reconnects, server restarts and leader changes, which nats.go's pull
// consumer survives by itself.
func (s *JSSubscriber) Subscribe(ctx context.Context, h Handler) error {
	nc, js, err := s.c.connect(ctx)
	if err != nil || nc == nil {
		return err
	}
	defer s.c.close(nc)
	o := s.c.opts
	b := backoff.New(o.BackoffMin, o.BackoffMax)
	for attempt := 1; ctx.Err() == nil; attempt++ {
		cons, err := s.consumer(ctx, js)
		if err != nil {
			logRetry(ctx, s.c.log, slog.LevelWarn, "the consumer is not usable yet, retrying", err, attempt)
			if !b.Wait(ctx) {
				return nil
			}
			continue
		}
		gone := make(chan error, 1)
		cc, err := cons.Consume(func(m jetstream.Msg) { h(s.wrap(ctx, m)) },
			jetstream.PullPriorityGroup(PriorityGroup),
			jetstream.PullMaxMessages(o.MaxInflight),
			// Pulls that expire within half of PinnedTTL keep the pin
			// while this receiver lives, however quiet the stream
			// (MinPinnedTTL keeps this at nats.go's 1s or more).
			jetstream.PullExpiry(o.PinnedTTL/2),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if errors.Is(err, jetstream.ErrPinIDMismatch) {
					s.lostPin(err)
					return
				}
				if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
					select {
					case gone <- err:
					default:
					}
					return
				}
				s.c.log.Debug("consuming", "err", err)
			}))
		if err != nil {
			s.c.log.Warn("consuming failed, retrying", "err", err)
			if !b.Wait(ctx) {
				return nil
			}
			continue
		}
		attempt = 0
		b.Reset()
		if err := s.watch(ctx, cons, gone); err != nil {
			cc.Stop()
			s.metrics.consumerRecreated.Inc()
			s.c.log.Warn("the consumer was deleted; creating it again", "consumer", o.Consumer, "err", err)
			continue
		}
		cc.Stop()
		return nil
	}
	return nil
}

// infoEvery is how often the consumer's state is read for the metrics.
const infoEvery = 10 * time.Second

// watch reads the consumer's state into the metrics until ctx is done
// (nil) or the consumer is gone (the reason).
func (s *JSSubscriber) watch(ctx context.Context, cons jetstream.Consumer, gone <-chan error) error {
	t := time.NewTicker(infoEvery)
	defer t.Stop()
	for {
		if err := s.readInfo(ctx, cons); errors.Is(err, jetstream.ErrConsumerNotFound) {
			// Deleted while this receiver was away, or in a server
			// restart: pulls then only fail quietly.
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-gone:
			return err
		case <-t.C:
		}
	}
}

func (s *JSSubscriber) readInfo(ctx context.Context, cons jetstream.Consumer) error {
	rctx, cancel := context.WithTimeout(ctx, s.c.opts.ConnectTimeout)
	defer cancel()
	info, err := cons.Info(rctx)
	if err != nil {
		return err
	}
	s.metrics.pending.Set(float64(info.NumPending))
	s.metrics.ackPending.Set(float64(info.NumAckPending))
	s.metrics.redelivered.Set(float64(info.NumRedelivered))
	return nil
}

// consumer creates the durable consumer, or updates it to this
// receiver's settings: the receivers own it, unlike the stream.
func (s *JSSubscriber) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	o := s.c.opts
	rctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(rctx, o.Stream, s.ConsumerConfig())
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream %q does not exist yet (the first poller creates it, or the operator): %w", o.Stream, err)
	case err != nil && isPermission(err):
		return nil, fmt.Errorf("create consumer %q on stream %q: the account may not (check the NATS permissions of %s): %w", o.Consumer, o.Stream, s.c.section, err)
	case err != nil:
		return nil, fmt.Errorf("create consumer %q on stream %q: %w", o.Consumer, o.Stream, err)
	}
	return cons, nil
}

// wrap makes a delivery a Message, noting when this receiver became the
// active one.
func (s *JSSubscriber) wrap(ctx context.Context, m jetstream.Msg) Message {
	if pin := m.Headers().Get("Nats-Pin-Id"); pin != "" {
		s.mu.Lock()
		changed := pin != s.pinID
		s.pinID = pin
		s.mu.Unlock()
		if changed {
			// Handed on only after OnActive: the turn begins first.
			s.metrics.pinned.Inc()
			s.c.log.Info("this receiver is now the active one of the consumer", "consumer", s.c.opts.Consumer)
			if s.c.opts.OnActive != nil {
				s.c.opts.OnActive(ctx)
			}
		}
	}
	j := newJSMsg(m, Tokens(s.c.opts.Topic), s.c.opts.AckWait, s.metrics.progress)
	j.forget = func() { s.forget(j) }
	s.mu.Lock()
	s.outstanding[j] = struct{}{}
	s.mu.Unlock()
	return j
}

func (s *JSSubscriber) forget(j *jsMsg) {
	s.mu.Lock()
	delete(s.outstanding, j)
	s.mu.Unlock()
}

// Connected reports whether the connection is up (for readiness checks).
func (s *JSSubscriber) Connected() bool {
	return s.c.connected()
}

// jsMsg is one JetStream delivery. While it is neither acknowledged nor
// terminated it tells the server, every half ack wait, that it is still
// being worked on (a push that takes long), so the server does not
// deliver it again meanwhile.
type jsMsg struct {
	m         jetstream.Msg
	publisher string
	redeliv   bool

	mu       sync.Mutex
	progress *time.Timer // nil once settled
	forget   func()      // drops it from its subscriber's outstanding; may be nil
}

func newJSMsg(m jetstream.Msg, topicTokens int, ackWait time.Duration, progressed prometheus.Counter) *jsMsg {
	j := &jsMsg{m: m, publisher: subjectPublisher(m.Subject(), topicTokens)}
	if md, err := m.Metadata(); err == nil {
		j.redeliv = md.NumDelivered > 1
	}
	if ackWait > 0 && progressed != nil {
		every := ackWait / 2
		tick := func() {
			j.mu.Lock()
			defer j.mu.Unlock()
			if j.progress == nil {
				return
			}
			if m.InProgress() != nil {
				// The connection is gone (the server delivers it again
				// after the ack wait) or it was settled meanwhile.
				j.progress = nil
				return
			}
			progressed.Inc()
			j.progress.Reset(every)
		}
		j.mu.Lock()
		j.progress = time.AfterFunc(every, tick)
		j.mu.Unlock()
	}
	return j
}

func (j *jsMsg) settle() {
	j.mu.Lock()
	if j.progress != nil {
		j.progress.Stop()
		j.progress = nil
	}
	forget := j.forget
	j.mu.Unlock()
	if forget != nil {
		forget()
	}
}

// giveBack stops the progress notices and asks the server to deliver the
// message again now (to whichever receiver is active).
func (j *jsMsg) giveBack() {
	j.mu.Lock()
	if j.progress != nil {
		j.progress.Stop()
		j.progress = nil
	}
	j.mu.Unlock()
	_ = j.m.Nak()
}

func (j *jsMsg) Data() []byte      { return j.m.Data() }
func (j *jsMsg) Redelivered() bool { return j.redeliv }
func (j *jsMsg) Ack() error        { j.settle(); return j.m.Ack() }
func (j *jsMsg) Term() error       { j.settle(); return j.m.Term() }

// Publisher is the subject's publisher token (see subjectPublisher).
func (j *jsMsg) Publisher() (string, bool) { return j.publisher, true }

type jsSubMetrics struct {
	pending, ackPending, redelivered prometheus.Gauge
	pinned                           prometheus.Counter
	progress                         prometheus.Counter
	consumerRecreated                prometheus.Counter
}

func newJSSubMetrics(reg prometheus.Registerer) (*jsSubMetrics, error) {
	m := &jsSubMetrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "consumer_pending_messages",
			Help: "Messages of the stream the shared JetStream consumer has yet to deliver (read every 10s): the backlog of the Pushgateway output.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "consumer_ack_pending_messages",
			Help: "Messages the shared JetStream consumer delivered that are not acknowledged yet (read every 10s); at most max_inflight.",
		}),
		redelivered: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "consumer_redelivered_messages",
			Help: "Messages the shared JetStream consumer delivered more than once and that are not acknowledged yet (read every 10s).",
		}),
		pinned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "consumer_pinned_total",
			Help: "Times this receiver became the active (pinned) one of the shared JetStream consumer: at its first delivery, and after each failover to it.",
		}),
		progress: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "ack_progress_total",
			Help: "In-progress notices sent for JetStream deliveries an output was still working on after half the ack wait, so the server did not deliver them again.",
		}),
		consumerRecreated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "consumer_recreated_total",
			Help: "Times the JetStream consumer was found deleted while consuming, and created again.",
		}),
	}
	for _, c := range []prometheus.Collector{m.pending, m.ackPending, m.redelivered, m.pinned, m.progress, m.consumerRecreated} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stream metrics: %w", err)
		}
	}
	return m, nil
}
