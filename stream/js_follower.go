package stream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/internal/backoff"
)

// Snapshotter is a Subscriber whose subscription starts with the stream's
// current state, the last message of every subject, before it follows
// what arrives after. An output that holds scrapes in memory needs no
// replay from it: the subscription is one.
type Snapshotter interface {
	// Snapshotted returns a channel that is closed once Subscribe's handler
	// has returned for every message of the state the stream held when the
	// subscription began.
	Snapshotted() <-chan struct{}
}

// JSFollower follows a stream with a consumer of its own, for one
// receiver's serving output: an ordered consumer that starts with the last
// message of every subject and then delivers each new one. It is not
// durable (the server forgets it when the receiver goes) and needs no
// acknowledgements: it carries no position worth keeping, since a restart
// begins again from the stream's state, which is the newest scrape of every
// target.
type JSFollower struct {
	c     *jsConn
	check time.Duration // streamCheck; shorter in tests

	once sync.Once
	snap chan struct{}
}

var (
	_ Subscriber  = (*JSFollower)(nil)
	_ Snapshotter = (*JSFollower)(nil)
)

// NewJSFollower returns a follower; nothing connects until Subscribe. Its
// connection's metrics are registered on reg with the label
// role="follower".
func NewJSFollower(opts JSOptions, logger *slog.Logger, reg prometheus.Registerer) (*JSFollower, error) {
	if opts.Name != "" {
		opts.Name += "-follower"
	}
	c, err := newJSConn(opts, "follower", logger, reg)
	if err != nil {
		return nil, err
	}
	// Errors point at the section the options came from.
	c.section = "receiver_stream"
	return &JSFollower{c: c, check: streamCheck, snap: make(chan struct{})}, nil
}

// Snapshotted implements Snapshotter.
func (f *JSFollower) Snapshotted() <-chan struct{} { return f.snap }

// Subscribe implements Subscriber. nats.go's ordered consumer re-creates
// itself after a gap (reconnect, server restart, leader change) from the
// next stream sequence, so nothing is delivered twice or skipped.
func (f *JSFollower) Subscribe(ctx context.Context, h Handler) error {
	nc, js, err := f.c.connect(ctx)
	if err != nil || nc == nil {
		return err
	}
	defer f.c.close(nc)
	o := f.c.opts
	b := backoff.New(o.BackoffMin, o.BackoffMax)
	for attempt := 1; ctx.Err() == nil; attempt++ {
		cons, err := f.consumer(ctx, js)
		var cc jetstream.ConsumeContext
		if err == nil {
			cc, err = cons.Consume(func(m jetstream.Msg) {
				h(followed{m: m, topicTokens: Tokens(o.Topic)})
				if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
					f.snapshotted()
				}
			}, jetstream.PullMaxMessages(o.MaxInflight))
		}
		if err != nil {
			logRetry(ctx, f.c.log, slog.LevelWarn, "following the stream is not possible yet, retrying", err, attempt)
			if !b.Wait(ctx) {
				return nil
			}
			continue
		}
		// The consumer exists once Consume returned; it was created with
		// this many messages to deliver.
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			f.snapshotted()
		}
		f.watch(ctx, js)
		cc.Stop()
	}
	return nil
}

// streamCheck is how often the follower checks that its stream is still
// the one it began to follow.
const streamCheck = 5 * time.Second

// watch returns when ctx is done or the stream was deleted and created
// anew. nats.go's ordered consumer would follow a new stream from the old
// one's next sequence, skipping every message until the new stream's
// sequences reach it; starting over from the last message per subject
// instead serves every group again at once.
func (f *JSFollower) watch(ctx context.Context, js jetstream.JetStream) {
	created := f.created(ctx, js)
	t := time.NewTicker(f.check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := f.created(ctx, js)
		switch {
		case now.IsZero():
			// Missing, or not reachable now: look again later.
		case created.IsZero():
			created = now
		case !now.Equal(created):
			f.c.log.Warn("the stream was deleted and created anew; following it again from the newest scrape of every group", "stream", f.c.opts.Stream)
			return
		}
	}
}

// created is when the stream was created, zero when that is not known.
func (f *JSFollower) created(ctx context.Context, js jetstream.JetStream) time.Time {
	rctx, cancel := context.WithTimeout(ctx, f.c.opts.ConnectTimeout)
	defer cancel()
	s, err := js.Stream(rctx, f.c.opts.Stream)
	if err != nil {
		return time.Time{}
	}
	return s.CachedInfo().Created
}

func (f *JSFollower) snapshotted() { f.once.Do(func() { close(f.snap) }) }

// consumer makes the ordered consumer; the server's side of it is created
// when it is consumed.
func (f *JSFollower) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	rctx, cancel := context.WithTimeout(ctx, f.c.opts.ConnectTimeout)
	defer cancel()
	return js.OrderedConsumer(rctx, f.c.opts.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
}

// Connected reports whether the connection is up (for readiness checks).
func (f *JSFollower) Connected() bool {
	return f.c.connected()
}

// followed is a delivery of the ordered consumer, which needs no
// acknowledgements.
type followed struct {
	m           jetstream.Msg
	topicTokens int
}

func (f followed) Data() []byte    { return f.m.Data() }
func (followed) Ack() error        { return nil }
func (followed) Term() error       { return nil }
func (followed) Redelivered() bool { return false }

// Publisher is the subject's publisher token (see subjectPublisher).
func (f followed) Publisher() (string, bool) {
	return subjectPublisher(f.m.Subject(), f.topicTokens), true
}
