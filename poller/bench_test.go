package poller

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

// BenchmarkScrapeOnce is the poller's work per scrape up to the outbox: an
// HTTP GET of the node exporter sample from a loopback exporter, snappy
// compression and the envelope. Publishing is measured by the stream tests'
// server round trips, not here.
func BenchmarkScrapeOnce(b *testing.B) {
	sample := testenv.Sample(b, "node_exporter.prom")
	exp := testenv.Exporter(b, sample, testenv.TextContentType)
	// Never connected: the benchmark stays on this side of the network.
	pub, err := stream.NewSTANPublisher(stream.STANOptions{
		URLs: []string{"nats://127.0.0.1:1"}, ClusterID: "c",
		ClientID: "bench", Channel: "x",
	}, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	target := config.Target{Job: "node", Name: "n1", URL: exp.URL}
	p, err := New(Options{Identity: "dc1", Interval: time.Minute, Targets: []config.Target{target}}, pub, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	t := p.loops["node\x00n1"].t
	s := p.sched
	b.SetBytes(int64(len(sample)))
	b.ReportAllocs()
	for b.Loop() {
		p.scrapeOnce(ctx, t, s)
	}
	if t.lastFailed {
		b.Fatal("the scrape failed")
	}
}
