package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func jsOptions(n *embedded.NATS, name string) JSOptions {
	return JSOptions{
		URLs: []string{n.URL()}, Name: name, Stream: "PROMETHEUS", Topic: "prometheus",
		Create:     &StreamSettings{MaxAge: time.Hour, Storage: jetstream.FileStorage},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		AckWait: 2 * time.Second, PinnedTTL: 2 * time.Second,
	}
}

func startJSPublisher(t *testing.T, o JSOptions) *JSPublisher {
	t.Helper()
	p, err := NewJSPublisher(o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, p.Run)
	<-p.Ready()
	return p
}

// publishersStream is the stream p publishes to, through p's own
// connection, for the test to read or change it.
func publishersStream(t *testing.T, p *JSPublisher) jetstream.Stream {
	t.Helper()
	_, js := p.c.current()
	s, err := js.Stream(context.Background(), "PROMETHEUS")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jsPublish publishes each message on the group of key and waits for the
// stream's acknowledgements.
func jsPublish(t *testing.T, p *JSPublisher, key Key, msgs ...string) {
	t.Helper()
	errs := make(chan error, len(msgs))
	testenv.WaitFor(t, "the stream", 5*time.Second, func() bool { return p.MaxPayload() > 0 && streamExists(p) })
	for _, m := range msgs {
		if err := p.Publish(key, []byte(m), func(err error) { errs <- err }); err != nil {
			t.Fatalf("publish %q: %v", m, err)
		}
	}
	for range msgs {
		if err := <-errs; err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

func streamExists(p *JSPublisher) bool {
	_, js := p.c.current()
	if js == nil {
		return false
	}
	_, err := js.Stream(context.Background(), p.c.opts.Stream)
	return err == nil
}

// jsCollector records deliveries by subject key and acknowledges them.
type jsCollector struct {
	mu   sync.Mutex
	got  map[Key][]string
	pubs map[string]int
	n    int
}

func newJSCollector() *jsCollector {
	return &jsCollector{got: map[Key][]string{}, pubs: map[string]int{}}
}

func (c *jsCollector) handle(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	p, _ := m.Publisher()
	c.pubs[p]++
	c.got[Key{Publisher: p}] = append(c.got[Key{Publisher: p}], string(m.Data()))
	_ = m.Ack()
}

func (c *jsCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *jsCollector) data(publisher string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got[Key{Publisher: publisher}]...)
}

func TestJetStreamKeepsTheNewestOfEachGroup(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	a := Key{Publisher: "dc1", Job: "node", Instance: "10.0.0.1:9100"}
	b := Key{Publisher: "dc1", Job: "node", Instance: "10.0.0.2:9100"}
	jsPublish(t, p, a, "a1", "a2", "a3")
	jsPublish(t, p, b, "b1")

	// The stream was created with one message per subject.
	s := publishersStream(t, p)
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxMsgsPerSubject != 1 || info.State.Msgs != 2 || info.Config.MaxAge != time.Hour || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("stream %+v holds %d messages, want one per subject (2), max_age 1h, file", info.Config, info.State.Msgs)
	}
	for _, k := range []Key{a, b} {
		if _, err := s.GetLastMsgForSubject(context.Background(), Subject("prometheus", k)); err != nil {
			t.Errorf("no message on %s: %v", Subject("prometheus", k), err)
		}
	}

	// A receiver starting now gets the newest of each group, nothing older.
	c := newJSCollector()
	sub, err := NewJSSubscriber(jsOptions(n, "receiver"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, c.handle) })
	testenv.WaitFor(t, "two deliveries", 10*time.Second, func() bool { return c.count() == 2 })
	if got := c.data("dc1"); len(got) != 2 || got[0] != "a3" || got[1] != "b1" {
		t.Fatalf("delivered %v, want [a3 b1]", got)
	}
}

func TestJetStreamRetriedPublishIsStoredOnce(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	k := Key{Publisher: "dc1", Job: "node", Instance: "x"}
	jsPublish(t, p, k, "same")
	jsPublish(t, p, k, "same")
	_, js := p.c.current()
	s, _ := js.Stream(context.Background(), "PROMETHEUS")
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 {
		t.Fatalf("a publish repeated with the same bytes was stored %d times, want once", info.State.LastSeq)
	}
}

func TestJetStreamExistingStreamIsNotChanged(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	js := testenv.JetStream(t, n.URL())
	// An operator's stream: the same subjects, other settings.
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "PROMETHEUS", Subjects: []string{"prometheus.>"}, MaxMsgsPerSubject: 5, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	o := jsOptions(n, "poller")
	p, err := NewJSPublisher(o, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, p.Run)
	testenv.WaitFor(t, "a warning naming the differences", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "max_msgs_per_subject 5, not 1") && strings.Contains(logs.String(), "storage Memory, not File")
	})
	s, _ := js.Stream(context.Background(), "PROMETHEUS")
	info, _ := s.Info(context.Background())
	if info.Config.MaxMsgsPerSubject != 5 || info.Config.Storage != jetstream.MemoryStorage {
		t.Fatalf("the stream was changed: %+v", info.Config)
	}
}

func TestJetStreamNoCreateWaitsForTheStream(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	var logs testenv.SyncBuffer
	o := jsOptions(n, "poller")
	o.Create = nil
	p, err := NewJSPublisher(o, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, p.Run)
	<-p.Ready()
	testenv.WaitFor(t, "an error naming create_stream", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "create_stream is false")
	})
	done := make(chan error, 1)
	if err := p.Publish(Key{Publisher: "dc1", Job: "j", Instance: "i"}, []byte("x"), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrNoStream) {
		t.Fatalf("publish without a stream: %v, want ErrNoStream", err)
	}
}

// Not parallel: the standby must get nothing while the active receiver
// lives, which holds only while it pulls every second against a 2s pin.
func TestJetStreamPinnedFailover(t *testing.T) {
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "0"}, "m0")

	type rcv struct {
		c    *jsCollector
		stop func()
		reg  *prometheus.Registry
		// activated counts OnActive calls; handledBefore is set when a
		// message was handled before the first.
		activated     atomic.Int32
		handledBefore atomic.Bool
	}
	start := func(name string) *rcv {
		r := &rcv{c: newJSCollector(), reg: prometheus.NewRegistry()}
		o := jsOptions(n, name)
		o.OnActive = func(context.Context) {
			if r.c.count() > 0 {
				r.handledBefore.Store(true)
			}
			r.activated.Add(1)
		}
		sub, err := NewJSSubscriber(o, nil, r.reg)
		if err != nil {
			t.Fatal(err)
		}
		r.stop = testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, r.c.handle) })
		return r
	}
	a, b := start("a"), start("b")
	testenv.WaitFor(t, "the first message", 10*time.Second, func() bool { return a.c.count()+b.c.count() == 1 })
	active, standby := a, b
	if b.c.count() == 1 {
		active, standby = b, a
	}
	// Only the pinned receiver gets messages.
	for i := 1; i <= 5; i++ {
		jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: fmt.Sprint(i)}, fmt.Sprint("m", i))
	}
	testenv.WaitFor(t, "five more to the active receiver", 10*time.Second, func() bool { return active.c.count() == 6 })
	if standby.c.count() != 0 {
		t.Fatalf("the standby got %d messages while the active one lived", standby.c.count())
	}
	// The active one goes; the standby takes over.
	active.stop()
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "after"}, "after")
	testenv.WaitFor(t, "the standby to take over", 10*time.Second, func() bool { return standby.c.count() == 1 })
	if got := counter(t, standby.reg, "prometheus_streams_stream_consumer_pinned_total"); got != 1 {
		t.Fatalf("consumer_pinned_total of the new active receiver = %v, want 1", got)
	}
	// Each was told once that its turn began, before its first message.
	for _, r := range []*rcv{active, standby} {
		if r.activated.Load() != 1 || r.handledBefore.Load() {
			t.Fatalf("OnActive called %d times (want 1), after a message was handled: %v", r.activated.Load(), r.handledBefore.Load())
		}
	}
}

// counter reads a counter without labels of reg, 0 when absent.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestJetStreamConsumerDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "1"}, "m1")
	c := newJSCollector()
	sub, err := NewJSSubscriber(jsOptions(n, "receiver"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, c.handle) })
	testenv.WaitFor(t, "the first message", 10*time.Second, func() bool { return c.count() == 1 })
	_, js := p.c.current()
	if err := js.DeleteConsumer(context.Background(), "PROMETHEUS", DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "2"}, "m2")
	testenv.WaitFor(t, "delivery through the consumer created again", 15*time.Second, func() bool { return c.count() >= 2 })
	if _, err := js.Consumer(context.Background(), "PROMETHEUS", DefaultConsumer); err != nil {
		t.Fatalf("the consumer was not created again: %v", err)
	}
}

func TestJetStreamFollowerSnapshotThenFollows(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	for i := range 20 {
		k := Key{Publisher: "dc1", Job: "j", Instance: fmt.Sprint(i)}
		jsPublish(t, p, k, "old", fmt.Sprint("new", i))
	}
	c := newJSCollector()
	f, err := NewJSFollower(jsOptions(n, "receiver"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return f.Subscribe(ctx, c.handle) })
	select {
	case <-f.Snapshotted():
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot after 10s")
	}
	if got := c.count(); got != 20 {
		t.Fatalf("snapshot delivered %d messages, want the 20 newest", got)
	}
	for _, d := range c.data("dc1") {
		if d == "old" {
			t.Fatal("the snapshot delivered a superseded message")
		}
	}
	jsPublish(t, p, Key{Publisher: "dc2", Job: "j", Instance: "x"}, "later")
	testenv.WaitFor(t, "a message published after the snapshot", 10*time.Second, func() bool { return len(c.data("dc2")) == 1 })
}

func TestJetStreamFollowerOfAnEmptyStream(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	startJSPublisher(t, jsOptions(n, "poller"))
	f, err := NewJSFollower(jsOptions(n, "receiver"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := newJSCollector()
	testenv.Run(t, func(ctx context.Context) error { return f.Subscribe(ctx, c.handle) })
	select {
	case <-f.Snapshotted():
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot of an empty stream after 10s")
	}
}

// TestJetStreamPublishRightsMissing runs a DC whose credentials may publish
// only on its own subjects: a publish on another DC's subject fails with
// ErrPermission, and the error and the log name the subject refused.
func TestJetStreamPublishRightsMissing(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{Configure: func(o *natsd.Options) {
		o.Users = []*natsd.User{{
			Username: "dc1", Password: "s3cret",
			Permissions: &natsd.Permissions{
				Publish:   &natsd.SubjectPermission{Allow: []string{"prometheus.dc1.>", "$JS.API.STREAM.INFO.PROMETHEUS", "$JS.API.STREAM.CREATE.PROMETHEUS"}},
				Subscribe: &natsd.SubjectPermission{Allow: []string{"_INBOX.>"}},
			},
		}}
	}})
	var logs testenv.SyncBuffer
	o := jsOptions(n, "poller")
	o.User, o.Password = "dc1", "s3cret"
	p, err := NewJSPublisher(o, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, p.Run)
	<-p.Ready()
	jsPublish(t, p, Key{Publisher: "dc1", Job: "node", Instance: "a"}, "own subject")

	refused := Subject("prometheus", Key{Publisher: "dc2", Job: "node", Instance: "a"})
	done := make(chan error, 1)
	if err := p.Publish(Key{Publisher: "dc2", Job: "node", Instance: "a"}, []byte("x"), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), refused) {
		t.Fatalf("publish on another DC's subject: %v, want ErrPermission naming %s", err, refused)
	}
	if !strings.Contains(logs.String(), refused) {
		t.Fatalf("the log does not name the subject refused:\n%s", logs.String())
	}
}

// TestJetStreamStreamDeleted deletes the stream under a running poller,
// receiver and follower: the poller creates it again, the shared consumer
// is created again on it, and the follower starts over on the new stream
// instead of waiting for its sequences to pass the old one's.
func TestJetStreamStreamDeleted(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	for i := range 5 {
		jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: fmt.Sprint(i)}, fmt.Sprint("before", i))
	}
	c := newJSCollector()
	sub, err := NewJSSubscriber(jsOptions(n, "receiver"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, c.handle) })
	fc := newJSCollector()
	f, err := NewJSFollower(jsOptions(n, "follower"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.check = 100 * time.Millisecond
	testenv.Run(t, func(ctx context.Context) error { return f.Subscribe(ctx, fc.handle) })
	testenv.WaitFor(t, "the first five at both", 10*time.Second, func() bool { return c.count() == 5 && fc.count() == 5 })

	_, js := p.c.current()
	if err := js.DeleteStream(context.Background(), "PROMETHEUS"); err != nil {
		t.Fatal(err)
	}
	// The poller's next publishes find no stream, which makes it create
	// the stream again; the poller's outbox would retry them, as here.
	k := Key{Publisher: "dc2", Job: "j", Instance: "after"}
	testenv.WaitFor(t, "a publish into the stream created again", 10*time.Second, func() bool {
		done := make(chan error, 1)
		if p.Publish(k, []byte("after"), func(err error) { done <- err }) != nil {
			return false
		}
		return <-done == nil
	})
	testenv.WaitFor(t, "the message after the deletion at the shared consumer and the follower", 15*time.Second, func() bool {
		return len(c.data("dc2")) == 1 && len(fc.data("dc2")) == 1
	})
}

// TestJetStreamLostPinHandsBack unpins the active receiver while it holds a
// delivery it has not settled: it is told its turn ended, and the delivery
// goes to the new active receiver at once (not after the ack wait), which
// begins its turn first.
func TestJetStreamLostPinHandsBack(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "held"}, "held")

	type rcv struct {
		mu       sync.Mutex
		got      []string
		active   atomic.Int32
		inactive atomic.Int32
	}
	start := func(name string, hold bool) *rcv {
		r := &rcv{}
		o := jsOptions(n, name)
		o.AckWait = time.Minute // a redelivery within the test is a hand-back
		o.OnActive = func(context.Context) { r.active.Add(1) }
		o.OnInactive = func() { r.inactive.Add(1) }
		sub, err := NewJSSubscriber(o, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, func(ctx context.Context) error {
			return sub.Subscribe(ctx, func(m Message) {
				r.mu.Lock()
				r.got = append(r.got, string(m.Data()))
				r.mu.Unlock()
				if !hold {
					_ = m.Ack()
				}
			})
		})
		return r
	}
	count := func(r *rcv) int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }
	a := start("a", true)
	testenv.WaitFor(t, "a to hold the message", 10*time.Second, func() bool { return count(a) == 1 })
	b := start("b", false)

	s := publishersStream(t, p)
	// The server pins again with the next delivery, to a pull of a's or
	// of b's; a pull of a's with its old pin then gets 423. Unpin and
	// publish until a has learnt that once.
	for i := 0; a.inactive.Load() == 0; i++ {
		if i == 20 {
			t.Fatal("a never lost the pin in 20 tries")
		}
		if err := s.UnpinConsumer(context.Background(), DefaultConsumer, PriorityGroup); err != nil {
			t.Fatal(err)
		}
		jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: fmt.Sprint("new", i)}, "new")
		testenv.WaitFor(t, "the new message delivered", 10*time.Second, func() bool {
			return count(a)+count(b) >= i+2
		})
	}
	// a handed back what it held: it is delivered again (to a, pinned
	// anew, or to b) long before the minute of ack wait.
	testenv.WaitFor(t, "the held message delivered again", 10*time.Second, func() bool {
		n := 0
		for _, r := range []*rcv{a, b} {
			r.mu.Lock()
			for _, m := range r.got {
				if m == "held" {
					n++
				}
			}
			r.mu.Unlock()
		}
		return n >= 2
	})
}

// TestJetStreamLongWorkReportsProgress holds a delivery past its ack wait:
// the subscriber tells the server it is still being worked on, so the
// server does not deliver it again, and the acknowledgement then settles
// it.
// Not parallel: a progress notice every second against a 2s ack wait
// leaves a second of slack, which a machine busy with other tests can eat.
func TestJetStreamLongWorkReportsProgress(t *testing.T) {
	n := testenv.NATS(t, embedded.NATSOptions{})
	p := startJSPublisher(t, jsOptions(n, "poller"))
	jsPublish(t, p, Key{Publisher: "dc1", Job: "j", Instance: "slow"}, "slow")

	reg := prometheus.NewRegistry()
	o := jsOptions(n, "receiver") // ack wait 2s
	sub, err := NewJSSubscriber(o, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan Message, 2)
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(m Message) { held <- m }) })
	var m Message
	select {
	case m = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	// Three notices, a half ack wait apart: the ack wait passed with a
	// half to spare, and the server would have delivered it again by then.
	testenv.WaitFor(t, "three progress notices", 10*time.Second, func() bool {
		return counter(t, reg, "prometheus_streams_stream_ack_progress_total") >= 3
	})
	select {
	case again := <-held:
		t.Fatalf("delivered again past the ack wait (redelivered %v) though in progress", again.Redelivered())
	default:
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	_, js := p.c.current()
	testenv.WaitFor(t, "the consumer to have nothing outstanding", 10*time.Second, func() bool {
		c, err := js.Consumer(context.Background(), "PROMETHEUS", DefaultConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
}
