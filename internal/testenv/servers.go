package testenv

import (
	"context"
	"testing"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// JetStream connects to the NATS server at url for the length of the test
// and returns its JetStream API, for a test to create, inspect or publish
// as an operator (or a hostile client) would.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream on %s: %v", url, err)
	}
	return js
}
