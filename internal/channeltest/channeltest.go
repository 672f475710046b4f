// Package channeltest watches a NATS Streaming channel in tests: what a
// poller published, independently of any receiver. It is apart from testenv
// because the stream package's own tests use testenv.
package channeltest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

// Observe subscribes to channel on s with its own durable (clientID) for the
// length of the test and calls fn with every message's envelope, decoded
// from a copy of the message and acknowledged after fn returns. A message
// that does not decode fails the test: whatever publishes in a test must
// publish valid envelopes.
func Observe(t testing.TB, s *embedded.Streaming, channel, clientID string, fn func(*envelope.Envelope)) {
	t.Helper()
	sub, err := stream.NewSTANSubscriber(stream.STANOptions{
		URLs: []string{s.URL()}, ClusterID: s.ClusterID(), ClientID: clientID, Channel: channel,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, PingInterval: 1, PingMaxOut: 3,
	}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("observe %s: %v", channel, err)
	}
	testenv.Run(t, func(ctx context.Context) error {
		return sub.Subscribe(ctx, func(m stream.Message) {
			defer func() { _ = m.Ack() }()
			env, err := envelope.Decode(bytes.Clone(m.Data()))
			if err != nil {
				t.Errorf("undecodable message on %s: %v", channel, err)
				return
			}
			fn(env)
		})
	})
}
