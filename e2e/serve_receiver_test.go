package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/channeltest"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/prometheus/common/model"
)

// countMessages counts the messages published on the channel, seen by a
// durable of its own apart from any receiver.
func countMessages(t *testing.T, s *embedded.Streaming) func() int {
	t.Helper()
	var mu sync.Mutex
	n := 0
	channeltest.Observe(t, s, "prometheus", "e2e-serve-observer", func(*envelope.Envelope) {
		mu.Lock()
		n++
		mu.Unlock()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// servesAll returns nil when /sd at base lists exactly the groups of
// exact and live, each of exact answers its scrape with 200 and exactly
// its exporter's body, and each of live (whose bodies change) with 200.
func servesAll(c *http.Client, base string, exact map[group]exporterBody, live ...group) error {
	groups := slices.Clone(live)
	for g := range exact {
		groups = append(groups, g)
	}
	sd, err := sdHas(c, base, groups...)
	if err != nil {
		return err
	}
	for g, body := range exact {
		if err := servesExactly(c, sd[g], body); err != nil {
			return err
		}
	}
	for _, g := range live {
		a, err := scrapeVia(c, sd[g])
		if err != nil {
			return fmt.Errorf("scrape of %s: %w", g, err)
		}
		if a.code != http.StatusOK {
			return fmt.Errorf("scrape of %s: %d %s", g, a.code, a.body)
		}
	}
	return nil
}

// TestServeReceiverRestartServesAgainWithinSeconds holds several groups in
// a receiver, silences the DC (the poller stops, so nothing is published
// any more), kills the receiver with SIGKILL once it has acknowledged
// everything, and starts it again: /sd lists every group again, and each
// answers its scrape with its exporter's body, within a few seconds. With
// nothing published and nothing left unacknowledged for its durable, only
// the replay of the channel's last max_age can explain it, which the test
// checks on the restarted receiver's counters and on the channel.
func TestServeReceiverRestartServesAgainWithinSeconds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	published := countMessages(t, nats)
	textURL, text := staticExporter(t, "node_exporter.prom", testenv.TextContentType)
	protoURL, proto := staticExporter(t, "node_exporter.pb", testenv.ProtoContentType)
	promURL, promBody := staticExporter(t, "prometheus.prom", testenv.TextContentType)
	pgwURL, pgwBody := staticExporter(t, "pushgateway.prom", testenv.TextContentType)
	want := map[group]exporterBody{
		{"node", "text", "DC1"}:        text,
		{"node", "proto", "DC1"}:       proto,
		{"prometheus", "main", "DC1"}:  promBody,
		{"pushgateway", "main", "DC1"}: pgwBody,
	}
	self := group{"prometheus_streams", "DC1", "DC1"}

	ports := testenv.FreePorts(t, 2)
	poller, _ := startServeDaemon(t, dir, "poller-dc1", serveConfig{
		Role: "poller", Identity: "DC1", Interval: 500 * time.Millisecond,
		MonitorPort: ports[0], ClusterID: nats.ClusterID(), NATSURL: nats.URL(),
		Jobs: []serveJob{
			{"node", []serveTarget{{"text", textURL + "/metrics"}, {"proto", protoURL + "/metrics"}}},
			{"prometheus", []serveTarget{{"main", promURL + "/metrics"}}},
			{"pushgateway", []serveTarget{{"main", pgwURL + "/metrics"}}},
		},
	})
	// max_age, and so the replay's window, is long enough that no held
	// scrape goes stale during the test.
	rcfg := serveConfig{
		Role: "receiver", Identity: "central", Interval: 30 * time.Second, MaxAge: time.Minute,
		MonitorPort: ports[1], ClusterID: nats.ClusterID(), NATSURL: nats.URL(), ClientID: "serve_receiver",
	}
	receiver, base := startServeDaemon(t, dir, "receiver", rcfg)
	client := newHTTPClient(t)
	waitUntil(t, "every group served", func() error { return servesAll(client, base, want, self) }, poller, receiver)

	// The DC goes silent, and the receiver acknowledges all it received,
	// so that its durable has nothing to deliver after the restart.
	poller.signal(t, syscall.SIGTERM)
	if code := poller.wait(t, stopTimeout); code != 0 {
		t.Errorf("poller exited with %s after SIGTERM", poller.cmd.ProcessState)
	}
	waitUntil(t, "the receiver to have received and acknowledged every message published", func() error {
		fams, err := families(client, base+"/metrics")
		if err != nil {
			return err
		}
		rec, _ := testenv.Value(fams, "prometheus_streams_receiver_messages_received_total", nil)
		acked, _ := testenv.Value(fams, "prometheus_streams_receiver_messages_acked_total", nil)
		if n := published(); rec < float64(n) || acked != rec {
			return fmt.Errorf("%d published, %v received, %v acknowledged", n, rec, acked)
		}
		return nil
	}, receiver)
	before := published()

	receiver.signal(t, syscall.SIGKILL)
	receiver.wait(t, stopTimeout)
	// The same file and so the same durable. How fast it comes back is a
	// figure of bench's (docs/performance.md); here, that it does.
	start := time.Now()
	again, _ := startServeDaemon(t, dir, "receiver-again", rcfg)
	waitUntil(t, "the restarted receiver to serve every group", func() error { return servesAll(client, base, want, self) }, again)
	t.Logf("the restarted receiver served every group %v after it started", time.Since(start).Round(time.Millisecond))

	// Only the replay explains it: nothing was published meanwhile, the
	// durable delivered nothing, and the replay offered the groups.
	if n := published(); n != before {
		t.Errorf("%d messages were published after the DC went silent", n-before)
	}
	fams, err := families(client, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := testenv.Value(fams, "prometheus_streams_receiver_messages_received_total", nil); rec != 0 {
		t.Errorf("the restarted receiver's durable delivered %v messages, want 0: all were acknowledged before the kill", rec)
	}
	if n, _ := testenv.Value(fams, "prometheus_streams_receiver_messages_replayed_total", nil); n < float64(len(want)+1) {
		t.Errorf("the restarted receiver replayed %v messages, want at least one per group (%d)", n, len(want)+1)
	}
}

// TestServeHotPair runs the Prometheus HA pair setup: two receivers, each
// with its own client_id and so its own durable subscription, consume the
// same channel with serve_targets. Each holds every group, so each
// Prometheus of an HA pair can find and scrape the targets on one receiver
// of its own (not one Prometheus on both: each group would be two targets
// with the same labels), and losing one receiver loses neither the data nor
// the other Prometheus's view. Both list every group and answer the
// same bodies; killing one with SIGKILL leaves the other serving, new
// scrapes included.
func TestServeHotPair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	textURL, text := staticExporter(t, "prometheus.prom", testenv.TextContentType)
	protoURL, proto := staticExporter(t, "node_exporter.pb", testenv.ProtoContentType)
	// The counter exporter's value says which scrape a body is of.
	counter, served := countingExporter(t)
	want := map[group]exporterBody{{"app", "text", "DC1"}: text, {"app", "proto", "DC1"}: proto}
	counted := group{"app", "counter", "DC1"}
	self := group{"prometheus_streams", "DC1", "DC1"}

	ports := testenv.FreePorts(t, 3)
	poller, _ := startServeDaemon(t, dir, "poller-dc1", serveConfig{
		Role: "poller", Identity: "DC1", Interval: 500 * time.Millisecond,
		MonitorPort: ports[0], ClusterID: nats.ClusterID(), NATSURL: nats.URL(),
		Jobs: []serveJob{{"app", []serveTarget{
			{"text", textURL + "/metrics"}, {"proto", protoURL + "/metrics"}, {"counter", counter.URL + "/metrics"},
		}}},
	})
	recv := func(name, clientID string, port int) (*process, string) {
		return startServeDaemon(t, dir, name, serveConfig{
			Role: "receiver", Identity: name, Interval: 500 * time.Millisecond, MaxAge: 10 * time.Second,
			MonitorPort: port, ClusterID: nats.ClusterID(), NATSURL: nats.URL(), ClientID: clientID,
		})
	}
	a, aBase := recv("receiver-a", "serve_receiver_a", ports[1])
	b, bBase := recv("receiver-b", "serve_receiver_b", ports[2])
	client := newHTTPClient(t)
	for _, base := range []string{aBase, bBase} {
		waitUntil(t, base+" to serve every group", func() error { return servesAll(client, base, want, self, counted) }, poller, a, b)
	}
	// The same targets, each naming its own receiver as the address.
	sdA, errA := fetchSD(client, aBase)
	sdB, errB := fetchSD(client, bBase)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if len(sdA) != len(sdB) {
		t.Fatalf("receiver A lists %d groups, B %d", len(sdA), len(sdB))
	}
	for g, ea := range sdA {
		eb, ok := sdB[g]
		if !ok {
			t.Fatalf("receiver B does not list %s", g)
		}
		if !maps.Equal(ea.Labels, eb.Labels) {
			t.Errorf("%s: receiver A labels it %v, receiver B %v", g, ea.Labels, eb.Labels)
		}
		if ea.Targets[0][model.AddressLabel] != model.LabelValue(hostPort(ports[1])) || eb.Targets[0][model.AddressLabel] != model.LabelValue(hostPort(ports[2])) {
			t.Errorf("%s: the targets are %v and %v, want each receiver's own address", g, ea.Targets, eb.Targets)
		}
	}
	// The counter's newest scrape: both receivers come to serve the same.
	waitUntil(t, "both receivers to serve the same newest scrape of the counter", func() error {
		ba, err := scrapeVia(client, sdA[counted])
		if err != nil {
			return err
		}
		bb, err := scrapeVia(client, sdB[counted])
		if err != nil {
			return err
		}
		if ba.code != http.StatusOK || string(ba.body) != string(bb.body) || ba.contentType != bb.contentType {
			return fmt.Errorf("A answers %d %q, B %d %q", ba.code, ba.body, bb.code, bb.body)
		}
		return nil
	}, poller, a, b)

	// Receiver A dies; B goes on serving, and holds scrapes made after
	// A's death.
	a.signal(t, syscall.SIGKILL)
	a.wait(t, stopTimeout)
	atKill := served.Load()
	waitUntil(t, "receiver B to serve a scrape of the counter made after A died", func() error {
		if err := servesAll(client, bBase, want, self, counted); err != nil {
			return err
		}
		ans, err := scrapeVia(client, sdB[counted])
		if err != nil {
			return err
		}
		fams, err := parseText(ans.body)
		if err != nil {
			return fmt.Errorf("scrape of %s: %d %q: %w", counted, ans.code, ans.body, err)
		}
		if v, ok := testenv.Value(fams, "e2e_scrapes_total", nil); !ok || v <= float64(atKill) {
			return fmt.Errorf("receiver B serves e2e_scrapes_total %v, from before A died (%d)", v, atKill)
		}
		return nil
	}, poller, b)
}
