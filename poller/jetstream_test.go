package poller

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

// TestJetStreamOutageBridgedByTheOutbox takes the DC's NATS server away
// for several intervals while the poller scrapes on: its outbox keeps the
// newest scrape of the target, and once the server is back (same port,
// same file store) that scrape is what the stream holds.
func TestJetStreamOutageBridgedByTheOutbox(t *testing.T) {
	port := testenv.FreePort(t)
	dir := t.TempDir()
	n := testenv.NATS(t, embedded.NATSOptions{Port: port, StoreDir: dir})

	pub, err := stream.NewJSPublisher(stream.JSOptions{
		URLs: []string{n.URL()}, Name: "poller", Stream: "PROMETHEUS", Topic: "prometheus",
		Create:     &stream.StreamSettings{MaxAge: time.Hour},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, AckWait: 2 * time.Second,
	}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	exp := testenv.Exporter(t, testenv.Sample(t, "node_exporter.prom"), testenv.TextContentType)
	p, _ := newPoller(t, pub, Options{Interval: 20 * time.Millisecond, Targets: []config.Target{{Job: "node", Name: "n1", URL: exp.URL}}})
	testenv.Run(t, p.Run)

	subject := stream.Subject("prometheus", stream.Key{Publisher: "dc1", Job: "node", Instance: "n1"})
	last := func() *envelope.Envelope {
		nc, err := nats.Connect(n.URL())
		if err != nil {
			return nil
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		s, err := js.Stream(context.Background(), "PROMETHEUS")
		if err != nil {
			return nil
		}
		m, err := s.GetLastMsgForSubject(context.Background(), subject)
		if err != nil {
			return nil
		}
		env, err := envelope.Decode(m.Data)
		if err != nil {
			t.Fatalf("the stream holds what is no envelope: %v", err)
		}
		return env
	}
	testenv.WaitFor(t, "a scrape in the stream", 10*time.Second, func() bool { return last() != nil })

	// The outage: the server goes, the poller scrapes on.
	n.Shutdown()
	down := time.Now()
	replaced := testutil.ToFloat64(p.metrics.replaced)
	testenv.WaitFor(t, "scrapes to replace each other in the outbox", 10*time.Second, func() bool {
		return testutil.ToFloat64(p.metrics.replaced) >= replaced+3
	})
	if got := p.outbox.len(); got != 1 {
		t.Fatalf("the outbox holds %d scrapes of one target, want its newest alone", got)
	}

	// Back on the same port and store: the newest scrape arrives.
	n = testenv.NATS(t, embedded.NATSOptions{Port: port, StoreDir: dir})
	testenv.WaitFor(t, "a scrape taken during the outage in the stream", 15*time.Second, func() bool {
		env := last()
		return env != nil && env.ScrapeStart.After(down)
	})
}
