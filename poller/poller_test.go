package poller

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/channeltest"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a real NATS Streaming server with a publisher for the poller
// under test and a subscriber that decodes what arrives.
type harness struct {
	nats *embedded.Streaming
	pub  *stream.STANPublisher
	mu   sync.Mutex
	got  []*envelope.Envelope
}

func streamOptions(url, cluster, client string) stream.STANOptions {
	return stream.STANOptions{
		URLs: []string{url}, ClusterID: cluster, ClientID: client, Channel: "prometheus",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, PingInterval: 1, PingMaxOut: 3,
	}
}

func newHarness(t *testing.T, s *embedded.Streaming) *harness {
	t.Helper()
	h := &harness{nats: s}
	var err error
	h.pub, err = stream.NewSTANPublisher(streamOptions(s.URL(), s.ClusterID(), "poller"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, h.pub.Run)
	return h
}

// subscribe starts recording the envelopes published on the channel.
func (h *harness) subscribe(t *testing.T) {
	t.Helper()
	channeltest.Observe(t, h.nats, "prometheus", "observer", func(env *envelope.Envelope) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.got = append(h.got, env)
	})
}

// latest returns the newest envelope received for instance, or nil.
func (h *harness) latest(instance string) *envelope.Envelope {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.got) - 1; i >= 0; i-- {
		if h.got[i].Instance == instance {
			return h.got[i]
		}
	}
	return nil
}

func (h *harness) count(instance string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.got {
		if e.Instance == instance {
			n++
		}
	}
	return n
}

func newPoller(t *testing.T, pub stream.Publisher, opts Options) (*Poller, *prometheus.Registry) {
	t.Helper()
	if opts.Identity == "" {
		opts.Identity = "dc1"
	}
	if opts.Interval == 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.ShutdownGrace == 0 {
		// Some tests stop the server before the poller; the poller would
		// wait this long for acknowledgements that cannot come.
		opts.ShutdownGrace = 200 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	p, err := New(opts, pub, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func TestEveryScrapeIsPublished(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	sample := testenv.Sample(t, "node_exporter.prom")
	var headers http.Header
	var hmu sync.Mutex
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hmu.Lock()
		headers = r.Header.Clone()
		hmu.Unlock()
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = w.Write(sample)
	}))
	defer good.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()

	p, reg := newPoller(t, h.pub, Options{Targets: []config.Target{
		{Job: "node", Name: "good", URL: good.URL + "/metrics"},
		{Job: "node", Name: "down", URL: down.URL + "/metrics"},
	}, Timeout: 50 * time.Millisecond})
	testenv.Run(t, p.Run)
	testenv.WaitFor(t, "a message from each target", 5*time.Second, func() bool {
		return h.latest("good") != nil && h.latest("down") != nil
	})

	ok := h.latest("good")
	if ok.Job != "node" || ok.Publisher != "dc1" || ok.Outcome != envelope.OutcomeSuccess || ok.ContentType != testenv.TextContentType {
		t.Fatalf("good target's envelope: %+v", ok)
	}
	if ok.ScrapeStart.IsZero() || ok.ScrapeDuration <= 0 || time.Since(ok.ScrapeStart) > 5*time.Second {
		t.Fatalf("scrape time %v duration %v", ok.ScrapeStart, ok.ScrapeDuration)
	}
	body, err := ok.Body(nil, 1<<20)
	if err != nil || !bytes.Equal(body, sample) {
		t.Fatalf("body: err %v, %d bytes, want the %d bytes served unchanged", err, len(body), len(sample))
	}
	bad := h.latest("down")
	if bad.Outcome != envelope.OutcomeFailure || !strings.Contains(bad.Error, "503") || len(bad.Payload) != 0 {
		t.Fatalf("failed target's envelope: outcome %v error %q payload %d bytes", bad.Outcome, bad.Error, len(bad.Payload))
	}

	hmu.Lock()
	defer hmu.Unlock()
	if got := headers.Get("X-Prometheus-Scrape-Timeout-Seconds"); got != "0.05" {
		t.Errorf("X-Prometheus-Scrape-Timeout-Seconds = %q, want 0.05", got)
	}
	if !strings.Contains(headers.Get("Accept"), "text/plain;version=0.0.4") || !strings.Contains(headers.Get("Accept"), "encoding=delimited") {
		t.Errorf("Accept = %q", headers.Get("Accept"))
	}
	if !strings.Contains(headers.Get("Accept-Encoding"), "gzip") {
		t.Errorf("Accept-Encoding = %q, want compressed transfer", headers.Get("Accept-Encoding"))
	}
	if n := testutil.ToFloat64(p.metrics.scrapeFailures.WithLabelValues("node", "down", reasonHTTPStatus)); n < 1 {
		t.Errorf("http_status failures for the down target = %v", n)
	}
	// The subscriber can see a message before the poller sees its ack.
	testenv.WaitFor(t, "published_total to count both targets' messages", 5*time.Second, func() bool {
		return testutil.ToFloat64(p.metrics.published) >= 2
	})
	if n, err := testutil.GatherAndCount(reg, "prometheus_streams_poller_scrapes_total"); err != nil || n != 4 {
		t.Errorf("scrapes_total series = %d (%v), want 4 (2 targets x 2 outcomes, pre-created)", n, err)
	}
}

func TestFailedScrapeReasons(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	stall := make(chan struct{})
	defer close(stall)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	big := testenv.Exporter(t, bytes.Repeat([]byte("x 1\n"), 2000), testenv.TextContentType)
	noise := make([]byte, 3<<20) // incompressible: larger than NATS's 1 MB max_payload after snappy
	_, _ = rand.Read(noise)
	huge := testenv.Exporter(t, noise, testenv.TextContentType)
	refused := "http://" + testenv.FreeAddr(t) + "/metrics"

	p, _ := newPoller(t, h.pub, Options{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, BodyLimit: 4 << 20, Targets: []config.Target{
		{Job: "j", Name: "slow", URL: slow.URL},
		{Job: "j", Name: "refused", URL: refused},
	}})
	// Reading 3 MiB takes longer than the 100ms above under the race detector.
	large, _ := newPoller(t, h.pub, Options{Identity: "dc2", Interval: time.Second, Targets: []config.Target{{Job: "j", Name: "huge", URL: huge.URL}}})
	limited, _ := newPoller(t, h.pub, Options{Identity: "dc3", BodyLimit: 1000, Targets: []config.Target{{Job: "j", Name: "big", URL: big.URL}}})
	testenv.Run(t, p.Run)
	testenv.Run(t, large.Run)
	testenv.Run(t, limited.Run)

	cases := []struct{ instance, reason, errText string }{
		{"slow", reasonTimeout, "deadline exceeded"},
		{"refused", reasonConnection, "refused"},
		{"huge", reasonMessageTooLarge, "more than the"},
		{"big", reasonBodyTooLarge, "body_size_limit"},
	}
	for _, c := range cases {
		t.Run(c.instance, func(t *testing.T) {
			testenv.WaitFor(t, "a message for "+c.instance, 10*time.Second, func() bool { return h.latest(c.instance) != nil })
			env := h.latest(c.instance)
			if env.Outcome != envelope.OutcomeFailure || !strings.Contains(env.Error, c.errText) {
				t.Fatalf("outcome %v error %q, want a failure mentioning %q", env.Outcome, env.Error, c.errText)
			}
			pp := map[string]*Poller{"big": limited, "huge": large}[c.instance]
			if pp == nil {
				pp = p
			}
			if n := testutil.ToFloat64(pp.metrics.scrapeFailures.WithLabelValues("j", c.instance, c.reason)); n < 1 {
				t.Fatalf("scrape_failures_total{reason=%q} = %v", c.reason, n)
			}
		})
	}
}

// Parallel: see TestScrapeWithTLSAndCredentials.
// Not parallel: it scrapes every 20ms with as short a timeout, which the
// poller's other tests' load would make time out.
func TestStreamUnreachableAtStart(t *testing.T) {
	// The poller starts before the server exists, keeps scraping, holds only
	// the newest scrape per target and publishes it once the server is up.
	port := testenv.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pub, err := stream.NewSTANPublisher(streamOptions("nats://"+addr, embedded.DefaultClusterID, "poller"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, pub.Run)
	exp := testenv.Exporter(t, testenv.Sample(t, "node_exporter.prom"), testenv.TextContentType)
	p, _ := newPoller(t, pub, Options{Interval: 20 * time.Millisecond, Targets: []config.Target{{Job: "node", Name: "n1", URL: exp.URL}}})
	testenv.Run(t, p.Run)
	// A scrape too large for the server, taken while its limit was unknown:
	// once connected it must still arrive, as a failure saying why.
	noise := make([]byte, 3<<20)
	_, _ = rand.Read(noise)
	huge := testenv.Exporter(t, noise, testenv.TextContentType)
	large, _ := newPoller(t, pub, Options{Identity: "dc2", Interval: time.Second, Targets: []config.Target{{Job: "node", Name: "huge", URL: huge.URL}}})
	testenv.Run(t, large.Run)
	testenv.WaitFor(t, "the huge target to be scraped while disconnected", 5*time.Second, func() bool {
		return large.outbox.len() == 1
	})
	testenv.WaitFor(t, "scrapes to replace each other in the outbox", 5*time.Second, func() bool {
		return testutil.ToFloat64(p.metrics.replaced) >= 3
	})
	if n := p.outbox.len(); n != 1 {
		t.Fatalf("outbox holds %d messages for one target, want 1", n)
	}

	s := testenv.Streaming(t, embedded.StreamingOptions{Port: port})
	h := &harness{nats: s, pub: pub}
	h.subscribe(t)
	testenv.WaitFor(t, "the scrape to arrive once the stream is up", 10*time.Second, func() bool { return h.count("n1") > 0 })
	if env := h.latest("n1"); env.Outcome != envelope.OutcomeSuccess {
		t.Fatalf("outcome %v: %s", env.Outcome, env.Error)
	}
	testenv.WaitFor(t, "the oversized scrape to arrive as a failure", 10*time.Second, func() bool { return h.count("huge") > 0 })
	if env := h.latest("huge"); env.Outcome != envelope.OutcomeFailure || !strings.Contains(env.Error, "more than the") {
		t.Fatalf("oversized scrape arrived as %v: %q", env.Outcome, env.Error)
	}
}

func TestShutdownWaitsForAcksAtMostTheGrace(t *testing.T) {
	// The server goes away with publishes in flight: their acks never come,
	// and Run must still return once ShutdownGrace is over.
	s := testenv.Streaming(t, embedded.StreamingOptions{})
	h := newHarness(t, s)
	exp := testenv.Exporter(t, testenv.Sample(t, "node_exporter.prom"), testenv.TextContentType)
	p, _ := newPoller(t, h.pub, Options{
		Interval: 10 * time.Millisecond, ShutdownGrace: 300 * time.Millisecond,
		Targets: []config.Target{{Job: "node", Name: "n1", URL: exp.URL}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = p.Run(ctx)
		close(done)
	}()
	testenv.WaitFor(t, "publishes to be acknowledged", 5*time.Second, func() bool { return testutil.ToFloat64(p.metrics.published) > 0 })
	s.Shutdown()
	cancel()
	start := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Run took %v to return with a 300ms grace", took)
	}
}
