package embedded_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/stan.go"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/embedded"
)

// TestMain fails the package if any goroutine outlives the tests: both
// servers claim to stop everything on Shutdown/Close, and this holds them to
// it. No library goroutine needed to be ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 10 * time.Second

func startStreaming(t *testing.T, opts embedded.StreamingOptions) *embedded.Streaming {
	t.Helper()
	s, err := embedded.StartStreaming(opts)
	if err != nil {
		t.Fatalf("StartStreaming: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, s *embedded.Streaming, clientID string) stan.Conn {
	t.Helper()
	sc, err := stan.Connect(s.ClusterID(), clientID, stan.NatsURL(s.URL()), stan.ConnectWait(waitTimeout))
	if err != nil {
		t.Fatalf("stan connect to %s: %v", s.URL(), err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// receive waits for one message on ch, failing the test at the deadline.
func receive(t *testing.T, ch <-chan *stan.Msg) *stan.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no message within", waitTimeout)
		return nil
	}
}

func durableSubscribe(t *testing.T, sc stan.Conn, subject string) <-chan *stan.Msg {
	t.Helper()
	ch := make(chan *stan.Msg, 16)
	sub, err := sc.Subscribe(subject, func(m *stan.Msg) { ch <- m },
		stan.DurableName("receiver"), stan.SetManualAckMode(), stan.DeliverAllAvailable())
	if err != nil {
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	// Close, not Unsubscribe: a durable must survive its client.
	t.Cleanup(func() { _ = sub.Close() })
	return ch
}

func TestStreamingPublishSubscribe(t *testing.T) {
	tests := []struct {
		name     string
		storeDir bool
	}{
		{name: "memory store"},
		{name: "file store", storeDir: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := embedded.StreamingOptions{}
			if tc.storeDir {
				opts.StoreDir = t.TempDir()
			}
			s := startStreaming(t, opts)
			if got, want := s.ClusterID(), embedded.DefaultClusterID; got != want {
				t.Errorf("ClusterID() = %q, want %q", got, want)
			}
			if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") {
				t.Errorf("URL() = %q, want nats://127.0.0.1:PORT", s.URL())
			}

			sc := connect(t, s, "test-client")
			ch := durableSubscribe(t, sc, "scrapes")
			if err := sc.Publish("scrapes", []byte("hello")); err != nil {
				t.Fatalf("publish: %v", err)
			}
			m := receive(t, ch)
			if string(m.Data) != "hello" {
				t.Errorf("received %q, want %q", m.Data, "hello")
			}
			if err := m.Ack(); err != nil {
				t.Errorf("ack: %v", err)
			}
		})
	}
}

func TestStreamingFixedPort(t *testing.T) {
	port := freePort(t)
	s := startStreaming(t, embedded.StreamingOptions{Port: port, ClusterID: "fixed"})
	if want := "nats://127.0.0.1:" + strconv.Itoa(port); s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if s.ClusterID() != "fixed" {
		t.Errorf("ClusterID() = %q, want %q", s.ClusterID(), "fixed")
	}
	connect(t, s, "fixed-client")
}

// TestStreamingRestartFileStore checks what fault tests will rely on: the
// same URL after Restart, and a file store that still holds what was
// published before it.
func TestStreamingRestartFileStore(t *testing.T) {
	s := startStreaming(t, embedded.StreamingOptions{StoreDir: t.TempDir()})
	before := s.URL()

	sc, err := stan.Connect(s.ClusterID(), "publisher", stan.NatsURL(s.URL()))
	if err != nil {
		t.Fatalf("stan connect: %v", err)
	}
	if err := sc.Publish("scrapes", []byte("kept")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// Closed before the restart: the client's reconnect goroutines are
	// not what this test is about.
	if err := sc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.URL() != before {
		t.Errorf("URL after restart = %q, want %q", s.URL(), before)
	}
	ch := durableSubscribe(t, connect(t, s, "receiver"), "scrapes")
	if m := receive(t, ch); string(m.Data) != "kept" {
		t.Errorf("received %q, want %q", m.Data, "kept")
	}
}

func TestStreamingLogger(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startStreaming(t, embedded.StreamingOptions{Logger: logger})
	s.Shutdown()
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "Starting nats-streaming-server") {
		t.Errorf("server log not routed to the logger at debug level; got:\n%s", out)
	}
	if strings.Contains(out, "level=INFO") || strings.Contains(out, "level=ERROR") {
		t.Errorf("server log above debug level:\n%s", out)
	}
}

func TestStreamingPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := ln.Addr().(*net.TCPAddr).Port
	s, err := embedded.StartStreaming(embedded.StreamingOptions{Port: port})
	if err == nil {
		s.Shutdown()
		t.Fatalf("StartStreaming on a busy port %d succeeded", port)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("StartStreaming on a busy port: %v, want EADDRINUSE", err)
	}
}

// freePort asks the kernel for a port that was free a moment ago; good
// enough on loopback in a test.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer the server's goroutines can log into while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
