package testenv

import (
	"context"
	"testing"

	"github.com/choria-io/prometheus-streams/embedded"
)

// Streaming starts an in-process NATS Streaming server for the length of
// the test.
func Streaming(t testing.TB, opts embedded.StreamingOptions) *embedded.Streaming {
	t.Helper()
	s, err := embedded.StartStreaming(opts)
	if err != nil {
		t.Fatalf("start NATS Streaming: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Pushgateway starts an in-process Pushgateway for the length of the test.
func Pushgateway(t testing.TB, opts embedded.PushgatewayOptions) *embedded.Pushgateway {
	t.Helper()
	p, err := embedded.StartPushgateway(opts)
	if err != nil {
		t.Fatalf("start Pushgateway: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close Pushgateway: %v", err)
		}
	})
	return p
}

// NATS starts an in-process nats-server with JetStream for the length of
// the test.
func NATS(t testing.TB, opts embedded.NATSOptions) *embedded.NATS {
	t.Helper()
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	n, err := embedded.StartNATS(opts)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(n.Shutdown)
	return n
}
