package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// TestMain runs the tests that start servers of their own side by side, up
// to 16 at once: they mostly wait on the servers' timers (ack waits, pings,
// pin TTLs, elections), not on the CPU.
func TestMain(m *testing.M) {
	testenv.WaitingTests(16)
	goleak.VerifyTestMain(m)
}

func options(s *embedded.Streaming, clientID string) STANOptions {
	return STANOptions{
		URLs: []string{s.URL()}, ClusterID: s.ClusterID(), ClientID: clientID, Channel: "test",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		PingInterval: 1, PingMaxOut: 3, AckWait: time.Second,
	}
}

// collector records deliveries; ack decides whether each is acknowledged.
type collector struct {
	mu   sync.Mutex
	got  []string
	redl int
	ack  bool
}

func (c *collector) handle(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, string(m.Data()))
	if m.Redelivered() {
		c.redl++
	}
	if c.ack {
		_ = m.Ack()
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func publish(t *testing.T, p *STANPublisher, msgs ...string) {
	t.Helper()
	errs := make(chan error, len(msgs))
	for _, m := range msgs {
		if err := p.Publish(Key{Publisher: "dc1", Job: "job", Instance: "instance"}, []byte(m), func(err error) { errs <- err }); err != nil {
			t.Fatalf("publish %q: %v", m, err)
		}
	}
	for range msgs {
		if err := <-errs; err != nil {
			t.Fatalf("publish ack: %v", err)
		}
	}
}

func TestPublishAndDurableSubscribe(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	reg := prometheus.NewRegistry()
	pub, err := NewSTANPublisher(options(s, "pub"), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	<-pub.Ready()
	if pub.MaxPayload() <= 0 {
		t.Fatalf("MaxPayload = %d while connected", pub.MaxPayload())
	}
	publish(t, pub, "a", "b", "c")

	// The durable starts with everything the channel holds.
	col := &collector{ack: true}
	sub, err := NewSTANSubscriber(options(s, "sub"), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	stopSub := testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, col.handle) })
	testenv.WaitFor(t, "3 deliveries", 5*time.Second, func() bool { return col.count() == 3 })
	if got := testutil.ToFloat64(pub.c.metrics.connected); got != 1 {
		t.Fatalf("connected gauge = %v, want 1", got)
	}

	// Closing keeps the durable: what is published meanwhile arrives on the
	// next start, and nothing acknowledged comes again.
	stopSub()
	publish(t, pub, "d")
	col2 := &collector{ack: true}
	sub2, err := NewSTANSubscriber(options(s, "sub"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub2.Subscribe(ctx, col2.handle) })
	testenv.WaitFor(t, "the message published while the subscriber was away", 5*time.Second, func() bool { return col2.count() == 1 })
	if col2.got[0] != "d" {
		t.Fatalf("after resuming got %q, want [d]", col2.got)
	}
}

func TestUnacknowledgedIsRedelivered(t *testing.T) {
	t.Parallel()
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	pub, err := NewSTANPublisher(options(s, "pub"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	<-pub.Ready()
	publish(t, pub, "x")

	col := &collector{ack: false}
	sub, err := NewSTANSubscriber(options(s, "sub"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, col.handle) })
	// AckWait is one second: the server delivers it again.
	testenv.WaitFor(t, "a redelivery", 10*time.Second, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		return col.redl >= 1
	})
}

func TestPublishWhileDisconnected(t *testing.T) {
	t.Parallel()
	opts := STANOptions{
		URLs: []string{"nats://127.0.0.1:1"}, ClusterID: "c", ClientID: "p", Channel: "x",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, ConnectTimeout: 100 * time.Millisecond,
	}
	reg := prometheus.NewRegistry()
	pub, err := NewSTANPublisher(opts, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	err = pub.Publish(Key{}, []byte("x"), func(error) { t.Error("done called for a refused publish") })
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish while disconnected: %v, want ErrNotConnected", err)
	}
	testenv.WaitFor(t, "failed connection attempts to be counted", 5*time.Second, func() bool {
		return testutil.ToFloat64(pub.c.metrics.attempts.WithLabelValues("failure")) >= 2
	})
	select {
	case <-pub.Ready():
		t.Fatal("Ready closed without a server")
	default:
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "file"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			// A port no other test takes while the server restarts.
			opts := embedded.StreamingOptions{Port: testenv.FreePort(t)}
			if store == "file" {
				opts.StoreDir = t.TempDir()
			}
			s := testenv.Streaming(t, opts)
			pubReg := prometheus.NewRegistry()
			pub, err := NewSTANPublisher(options(s, "pub"), nil, pubReg)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Run(t, pub.Run)
			col := &collector{ack: true}
			sub, err := NewSTANSubscriber(options(s, "sub"), nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			testenv.Run(t, func(ctx context.Context) error { return sub.Subscribe(ctx, col.handle) })
			testenv.WaitFor(t, "both connected", 5*time.Second, func() bool { return pub.Connected() && sub.Connected() })
			publish(t, pub, "before")
			testenv.WaitFor(t, "the first message", 5*time.Second, func() bool { return col.count() == 1 })

			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			// Keep publishing until one gets through: the clients find out
			// about the restart by themselves (pings, lost handler).
			i := 0
			testenv.WaitFor(t, "a message published after the restart to arrive", 30*time.Second, func() bool {
				if col.count() >= 2 {
					return true
				}
				i++
				_ = pub.Publish(Key{}, []byte(fmt.Sprintf("after-%d", i)), func(error) {})
				time.Sleep(50 * time.Millisecond) // pace the publishing loop
				return false
			})
			// The restart shows in the publisher's metrics: its NATS
			// connection came back underneath the session, or the session
			// was lost and made again.
			reconnects := testutil.ToFloat64(pub.c.metrics.reconnects)
			lost := testutil.ToFloat64(pub.c.metrics.lost)
			t.Logf("%s store: nats_reconnects_total %v, connections_lost_total %v", store, reconnects, lost)
			if reconnects+lost == 0 {
				t.Error("the server's restart shows in neither nats_reconnects_total nor connections_lost_total")
			}
		})
	}
}

// TestDefaults keeps the README's figures true: pings every 2s, 5 missed.
func TestDefaults(t *testing.T) {
	o := STANOptions{URLs: []string{"nats://x:4222"}, ClusterID: "c", ClientID: "id", Channel: "ch"}
	if err := o.applyDefaults(); err != nil {
		t.Fatal(err)
	}
	if o.PingInterval != 2 || o.PingMaxOut != 5 || o.ConnectTimeout != 5*time.Second || o.AckWait != 30*time.Second || o.MaxInflight != 64 {
		t.Fatalf("defaults: %+v", o)
	}
}
