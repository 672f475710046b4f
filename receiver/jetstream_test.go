package receiver

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/stream"
)

// jsBench is a real nats-server with JetStream and the stream the pollers
// would create, written to with plain NATS publishes so a test can put
// anything on any subject, as a hostile or misconfigured DC could.
type jsBench struct {
	nats *embedded.NATS
	js   jetstream.JetStream
	s    jetstream.Stream
}

func newJSBench(t *testing.T) *jsBench {
	t.Helper()
	b := &jsBench{nats: testenv.NATS(t, embedded.NATSOptions{})}
	b.js = testenv.JetStream(t, b.nats.URL())
	var err error
	b.s, err = b.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "PROMETHEUS", Subjects: []string{"prometheus.>"}, MaxMsgsPerSubject: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *jsBench) options() stream.JSOptions {
	return stream.JSOptions{
		URLs: []string{b.nats.URL()}, Name: "receiver", Stream: "PROMETHEUS", Topic: "prometheus",
		AckWait: 2 * time.Second, PinnedTTL: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}
}

func (b *jsBench) publish(t *testing.T, subject string, data []byte) {
	t.Helper()
	if _, err := b.js.Publish(t.Context(), subject, data); err != nil {
		t.Fatalf("publish on %s: %v", subject, err)
	}
}

func scrapeOf(t *testing.T, publisher, instance string) []byte {
	t.Helper()
	msg, err := envelope.Append(nil, &envelope.Envelope{
		Job: "node", Instance: instance, Publisher: publisher, ScrapeStart: time.Now(),
		Outcome: envelope.OutcomeSuccess, Codec: envelope.CodecSnappy, Payload: envelope.Compress(nil, []byte("v 1\n")),
	})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestJetStreamBindsThePublisherToTheSubject checks that a scrape whose
// envelope names another publisher than its subject is refused, counted
// and terminated, and that hostile payloads on the subjects are dropped
// by reason and terminated, while good scrapes around them pass: on both
// of the receiver's JetStream routes.
func TestJetStreamBindsThePublisherToTheSubject(t *testing.T) {
	b := newJSBench(t)
	good := stream.Subject("prometheus", stream.Key{Publisher: "dc1", Job: "node", Instance: "a"})
	// dc2's credentials may publish only on prometheus.dc2.>, but it
	// claims to be dc1 in the envelope.
	liar := stream.Subject("prometheus", stream.Key{Publisher: "dc2", Job: "node", Instance: "b"})
	garbage := stream.Subject("prometheus", stream.Key{Publisher: "dc1", Job: "node", Instance: "c"})
	truncated := stream.Subject("prometheus", stream.Key{Publisher: "dc1", Job: "node", Instance: "d"})
	b.publish(t, liar, scrapeOf(t, "dc1", "b"))
	// dc2 may publish on prometheus.dc2.>: a token more would make dc1 the
	// publisher token if only the last three were read.
	b.publish(t, "prometheus.dc2.dc1.node.e", scrapeOf(t, "dc1", "e"))
	b.publish(t, garbage, []byte("garbage that is not an envelope"))
	full := scrapeOf(t, "dc1", "d")
	b.publish(t, truncated, full[:len(full)/2])
	b.publish(t, good, scrapeOf(t, "dc1", "a"))

	sub, err := stream.NewJSSubscriber(b.options(), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	follower, err := stream.NewJSFollower(b.options(), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	push, serveOut := &recorder{name: "push"}, &recorder{name: "serve", replays: true}
	r, err := NewRoutes(Options{MaxAge: time.Minute}, []Route{
		{Sub: sub, Outputs: []output.Output{push}},
		{Sub: follower, Outputs: []output.Output{serveOut}},
	}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, r.Run)
	testenv.WaitFor(t, "the good scrape at both outputs", 10*time.Second, func() bool {
		return len(push.instances()) == 1 && len(serveOut.instances()) == 1
	})
	if push.instances()[0] != "a" || serveOut.instances()[0] != "a" {
		t.Fatalf("outputs got %v and %v, want only a", push.instances(), serveOut.instances())
	}
	dropped := func(reason string) float64 { return testutil.ToFloat64(r.metrics.dropped.WithLabelValues(reason)) }
	// Each bad message is dropped once per route.
	testenv.WaitFor(t, "the bad messages dropped on both routes", 10*time.Second, func() bool {
		return dropped(dropPublisherMismatch) == 4 && dropped("bad_magic") == 2 && dropped("truncated") == 2
	})
	if !serveOut.replayDone.Load() {
		t.Error("the serving output was not told the follower's snapshot was delivered")
	}
	// The shared consumer terminated the bad ones and acknowledged the good
	// one: nothing is pending or waiting for redelivery.
	testenv.WaitFor(t, "the consumer to have nothing outstanding", 10*time.Second, func() bool {
		c, err := b.js.Consumer(context.Background(), "PROMETHEUS", stream.DefaultConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
}
