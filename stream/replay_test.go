package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// replayLog records what a replay passes on, and any message breaking the
// Replayer contract for replayed messages.
type replayLog struct {
	mu   sync.Mutex
	got  []string
	errs []string
}

func (r *replayLog) handle(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(m.Data()))
	if err := m.Ack(); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("Ack of %q: %v", m.Data(), err))
	}
	if m.Redelivered() {
		r.errs = append(r.errs, fmt.Sprintf("%q marked redelivered", m.Data()))
	}
}

func (r *replayLog) check(t *testing.T, want []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Error(e)
	}
	if !slices.Equal(r.got, want) {
		t.Fatalf("replay passed %d messages %q,\nwant %d %q", len(r.got), r.got, len(want), want)
	}
}

// startReplay runs Replay in a goroutine, as the receiver does beside
// Subscribe, and returns where its result arrives.
func startReplay(ctx context.Context, sub *STANSubscriber, window time.Duration, h Handler) <-chan error {
	done := make(chan error, 1)
	go func() { done <- sub.Replay(ctx, window, h) }()
	return done
}

// replayResult waits for Replay to return.
func replayResult(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Replay did not return within %v", within)
		return nil
	}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// startPublisher returns a connected publisher on s.
func startPublisher(t *testing.T, s *embedded.Streaming) *STANPublisher {
	t.Helper()
	pub, err := NewSTANPublisher(options(s, "pub"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	<-pub.Ready()
	return pub
}

// newSubscriber returns a subscriber with client ID "sub" on s that nothing
// runs yet.
func newSubscriber(t *testing.T, s *embedded.Streaming, mod func(*STANOptions)) *STANSubscriber {
	t.Helper()
	opts := options(s, "sub")
	if mod != nil {
		mod(&opts)
	}
	sub, err := NewSTANSubscriber(opts, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestReplayPassesTheWindowInOrder(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	pub := startPublisher(t, s)
	// More than replayMaxInflight, so the replay depends on its
	// acknowledgements reaching the server.
	msgs := numbered("m", replayMaxInflight+44)
	publish(t, pub, msgs...)

	sub := newSubscriber(t, s, nil)
	col := &collector{ack: true}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, col.handle) })
	// Called right after Subscribe, before it has a connection, as the
	// receiver does.
	rl := &replayLog{}
	if err := replayResult(t, startReplay(t.Context(), sub, time.Minute, rl.handle), 20*time.Second); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	rl.check(t, msgs)
	testenv.WaitFor(t, "the durable to get every message", 10*time.Second, func() bool { return col.count() == len(msgs) })
}

// Not parallel: the new messages are in the window only if the replay's
// subscription reaches the server within a second.
func TestReplayLeavesOutWhatIsOlderThanTheWindow(t *testing.T) {
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	pub := startPublisher(t, s)
	publish(t, pub, numbered("old", 5)...)
	// The server stamped the old messages before acknowledging them, so
	// before oldDone (one machine, one clock).
	oldDone := time.Now()
	const gap = time.Second
	testenv.WaitFor(t, "the clock to pass the old messages", 2*gap, func() bool { return time.Since(oldDone) > gap })
	newMsgs := numbered("new", 5)
	publish(t, pub, newMsgs...)

	sub := newSubscriber(t, s, nil)
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(Message) {}) })
	testenv.WaitFor(t, "the subscriber to connect", 5*time.Second, sub.Connected)
	// The server starts the window at its own now minus window, which is
	// after oldDone+epsilon whatever the delay: the old messages are out
	// for sure. The new ones are in as long as the replay's subscription
	// reaches the server within gap-epsilon of this line, which a
	// loopback round trip or two does by orders of magnitude.
	const epsilon = 10 * time.Millisecond
	window := time.Since(oldDone) - epsilon
	rl := &replayLog{}
	if err := replayResult(t, startReplay(t.Context(), sub, window, rl.handle), 10*time.Second); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	rl.check(t, newMsgs)
}

func TestReplayOfAnEmptyChannelReturnsPromptly(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	sub := newSubscriber(t, s, nil)
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(Message) {}) })
	rl := &replayLog{}
	// replayIdle, plus the connection, bounds it.
	if err := replayResult(t, startReplay(t.Context(), sub, time.Minute, rl.handle), 5*time.Second); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	rl.check(t, nil)
}

func TestReplayLeavesTheDurableAlone(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	pub := startPublisher(t, s)
	// A long AckWait: what the durable gets again below comes from its
	// resuming, not from a timeout.
	longAck := func(o *STANOptions) { o.AckWait = time.Minute }

	// The durable acknowledges a, b, c and goes away.
	publish(t, pub, "a", "b", "c")
	sub1 := newSubscriber(t, s, longAck)
	col1 := &collector{ack: true}
	stop1 := testenv.Run(t, func(ctx context.Context) error { return sub1.Subscribe(ctx, col1.handle) })
	testenv.WaitFor(t, "the durable to get a, b, c", 5*time.Second, func() bool { return col1.count() == 3 })
	stop1()
	publish(t, pub, "d", "e")

	// Back, and not acknowledging: a replay beside it passes everything,
	// and auto-acknowledges it, on a subscription of its own.
	sub2 := newSubscriber(t, s, longAck)
	col2 := &collector{ack: false}
	stop2 := testenv.Run(t, func(ctx context.Context) error { return sub2.Subscribe(ctx, col2.handle) })
	rl := &replayLog{}
	if err := replayResult(t, startReplay(t.Context(), sub2, time.Minute, rl.handle), 10*time.Second); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	rl.check(t, []string{"a", "b", "c", "d", "e"})
	publish(t, pub, "f")
	testenv.WaitFor(t, "the durable to get d, e, f", 5*time.Second, func() bool { return col2.count() >= 3 })
	stop2()
	col2.mu.Lock()
	got2 := slices.Clone(col2.got)
	col2.mu.Unlock()
	if want := []string{"d", "e", "f"}; !slices.Equal(got2, want) {
		t.Fatalf("durable beside the replay got %q, want %q (it resumes where it was)", got2, want)
	}

	// The replay acknowledged nothing for the durable: d, e, f come again.
	sub3 := newSubscriber(t, s, longAck)
	col3 := &collector{ack: true}
	testenv.Run(t, func(ctx context.Context) error { return sub3.Subscribe(ctx, col3.handle) })
	testenv.WaitFor(t, "the durable to get d, e, f again", 5*time.Second, func() bool { return col3.count() >= 3 })
	col3.mu.Lock()
	defer col3.mu.Unlock()
	if want := []string{"d", "e", "f"}; !slices.Equal(col3.got, want) {
		t.Fatalf("durable after the replay got %q, want %q", col3.got, want)
	}
}

func TestReplayEndsWithItsContext(t *testing.T) {
	t.Parallel()
	t.Run("waiting for a connection", func(t *testing.T) {
		t.Parallel()
		s := testenv.Streaming(t, embedded.StreamingOptions{})
		sub := newSubscriber(t, s, nil) // nothing runs Subscribe
		ctx, cancel := context.WithCancel(t.Context())
		done := startReplay(ctx, sub, time.Minute, func(Message) { t.Error("a message without a connection") })
		cancel()
		if err := replayResult(t, done, 5*time.Second); err != nil {
			t.Fatalf("Replay after cancel: %v, want nil", err)
		}
	})
	t.Run("while replaying", func(t *testing.T) {
		t.Parallel()
		s := testenv.Streaming(t, embedded.StreamingOptions{})
		pub := startPublisher(t, s)
		publish(t, pub, numbered("m", 20)...)
		sub := newSubscriber(t, s, nil)
		testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(Message) {}) })
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rl := &replayLog{}
		done := startReplay(ctx, sub, time.Minute, func(m Message) {
			rl.handle(m)
			cancel()
		})
		if err := replayResult(t, done, 10*time.Second); err != nil {
			t.Fatalf("Replay after cancel: %v, want nil", err)
		}
		rl.check(t, []string{"m-000"})
	})
}

func TestReplayCutShortWhenTheConnectionIsLost(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	pub := startPublisher(t, s)
	publish(t, pub, numbered("m", 20)...)
	// The fewest missed pings stan.go allows: the loss is noticed sooner.
	sub := newSubscriber(t, s, func(o *STANOptions) { o.PingMaxOut = 2 })
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, func(Message) {}) })

	// The handler holds the first message until the connection is gone.
	first, release := make(chan struct{}), make(chan struct{})
	rl := &replayLog{}
	done := startReplay(t.Context(), sub, time.Minute, func(m Message) {
		rl.handle(m)
		if string(m.Data()) == "m-000" {
			close(first)
			<-release
		}
	})
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no replayed message")
	}
	s.Shutdown()
	// Pings tell the subscriber (PingInterval 1s, PingMaxOut 2).
	testenv.WaitFor(t, "the subscriber to lose its connection", 15*time.Second, func() bool { return !sub.Connected() })
	close(release)
	err := replayResult(t, done, 10*time.Second)
	if !errors.Is(err, ErrReplayCutShort) {
		t.Fatalf("Replay after losing the connection: %v, want ErrReplayCutShort", err)
	}
	t.Logf("Replay: %v", err)
	rl.check(t, []string{"m-000"})
}

func TestReplayOfNoWindow(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	sub := newSubscriber(t, s, nil) // no connection needed to replay nothing
	if err := sub.Replay(t.Context(), 0, func(Message) { t.Error("a message for a zero window") }); err != nil {
		t.Fatalf("Replay: %v", err)
	}
}
