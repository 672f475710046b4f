package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// TestServeTargetsIntoRealPrometheus is issue 11's "done when": a poller
// in one DC scrapes a real node exporter, two static exporters (the text
// sample and the protobuf one, constant values) and two targets that fail
// (nothing listening; 500); a receiver with serve_targets and no
// push_gateway serves them; Debian's Prometheus finds them with nothing
// but an http_sd_configs entry on the receiver's /sd. It sees every series
// as a Prometheus next to the exporters does (its direct jobs): the same
// series, and for the static exporters the same values; up 1 for the
// targets that answer and up 0 for those that fail; the same
// scrape_samples_scraped. Once the DC goes silent, every group first
// answers stale (up 0), then leaves /sd, and its series go stale.
func TestServeTargetsIntoRealPrometheus(t *testing.T) {
	t.Parallel()
	requireDebianPrometheus(t)
	// delete_after is far enough past max_age that every group is seen
	// answering "stale" before the first leaves /sd.
	const (
		maxAge      = 3 * time.Second
		deleteAfter = 8 * time.Second
	)
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	ports := testenv.FreePorts(t, 4)
	nodeURL := "http://" + hostPort(ports[0]) + "/metrics"
	node := startNodeExporter(t, dir, nodeURL)
	// The text sample with one series of an explicit timestamp, which the
	// receiver must pass on and Prometheus honour.
	explicitTS := time.Now().Add(-30 * time.Second).UnixMilli()
	textBody := exporterBody{testenv.TextContentType, append(testenv.Sample(t, "node_exporter.prom"),
		fmt.Sprintf("# TYPE streams_explicit_timestamp gauge\nstreams_explicit_timestamp 42 %d\n", explicitTS)...)}
	textURL := testenv.Exporter(t, textBody.body, textBody.contentType).URL
	protoURL, protoBody := staticExporter(t, "node_exporter.pb", testenv.ProtoContentType)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "exporter broken", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	down := "http://" + testenv.FreeAddr(t) + "/metrics"

	poller, _ := startServeDaemon(t, dir, "poller-dc1", serveConfig{
		Role: "poller", Identity: "DC1", Interval: time.Second, MaxAge: maxAge,
		MonitorPort: ports[1], ClusterID: nats.ClusterID(), NATSURL: nats.URL(),
		Jobs: []serveJob{
			{"node", []serveTarget{{"node1", nodeURL}}},
			{"static", []serveTarget{{"text", textURL + "/metrics"}, {"proto", protoURL + "/metrics"}}},
			{"broken", []serveTarget{{"down", down}, {"err500", failing.URL + "/metrics"}}},
		},
	})
	receiver, recvBase := startServeDaemon(t, dir, "receiver", serveConfig{
		Role: "receiver", Identity: "central", Interval: time.Second, MaxAge: maxAge, DeleteAfter: deleteAfter,
		MonitorPort: ports[2], ClusterID: nats.ClusterID(), NATSURL: nats.URL(), ClientID: "serve_receiver",
	})
	client := newHTTPClient(t)
	groups := map[group]float64{ // each group's up
		{"node", "node1", "DC1"}:             1,
		{"static", "text", "DC1"}:            1,
		{"static", "proto", "DC1"}:           1,
		{"prometheus_streams", "DC1", "DC1"}: 1, // the poller's self-scrape
		{"broken", "down", "DC1"}:            0,
		{"broken", "err500", "DC1"}:          0,
	}
	all := slices.Collect(maps.Keys(groups))
	var sd map[group]sdTarget
	waitUntil(t, "/sd to list every group", func() (err error) {
		sd, err = sdHas(client, recvBase, all...)
		return err
	}, poller, receiver)

	// The receiver answers each group's scrape exactly as its exporter did,
	// or 503 for a scrape that failed at the poller.
	for g, want := range map[group]exporterBody{{"static", "text", "DC1"}: textBody, {"static", "proto", "DC1"}: protoBody} {
		if err := servesExactly(client, sd[g], want); err != nil {
			t.Error(err)
		}
	}
	for _, g := range []group{{"broken", "down", "DC1"}, {"broken", "err500", "DC1"}} {
		if a, err := scrapeVia(client, sd[g]); err != nil || a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "failed") {
			t.Errorf("scrape of %s: %d %q (%v), want 503 saying the scrape failed", g, a.code, a.body, err)
		}
	}

	textHost, protoHost := strings.TrimPrefix(textURL, "http://"), strings.TrimPrefix(protoURL, "http://")
	prom := startServePrometheus(t, dir, hostPort(ports[3]), servePromConfig{
		ReceiverHost: hostPort(ports[2]),
		NodeHost:     hostPort(ports[0]),
		TextHost:     textHost,
		ProtoHost:    protoHost,
	})
	procs := []*process{node, poller, receiver, prom.process}
	waitUntil(t, "up of every group in Prometheus: 1, and 0 for the failing targets", func() error {
		got, err := valuesByInstance(client, prom.base, `up{publisher="DC1"}`)
		if err != nil {
			return err
		}
		for g, want := range groups {
			if v, ok := got[g.instance]; !ok || v != want {
				return fmt.Errorf("up of %s = %v (present %v), want %v", g, v, ok, want)
			}
		}
		if len(got) != len(groups) {
			return fmt.Errorf("%d targets with publisher DC1 %v, want %d", len(got), got, len(groups))
		}
		return nil
	}, procs...)

	// Every series as the direct scrape has it: for the node exporter,
	// whose values change, the same series; for the static exporters,
	// the same values too (apart from the scrape's own duration, and the
	// series added, which depend on when each job first scraped).
	for _, c := range []struct {
		what, direct, streamed string
		values                 bool
	}{
		{"the node exporter's series", `{job="node-direct"}`, `{job="node",instance="node1",publisher="DC1"}`, false},
		{"the text sample's series and values", fmt.Sprintf(`{job="static-direct",instance=%q}`, textHost), `{job="static",instance="text",publisher="DC1"}`, true},
		{"the protobuf sample's series and values", fmt.Sprintf(`{job="static-direct",instance=%q}`, protoHost), `{job="static",instance="proto",publisher="DC1"}`, true},
	} {
		waitUntil(t, c.what+" through the receiver as scraped directly", func() error {
			return sameSeries(client, prom.base, c.direct, c.streamed, c.values, "scrape_duration_seconds", "scrape_series_added")
		}, procs...)
	}
	if err := promValue(client, prom.base, `timestamp(streams_explicit_timestamp{job="static",instance="text",publisher="DC1"})`, float64(explicitTS)/1000); err != nil {
		t.Errorf("the explicit timestamp through the receiver: %v", err)
	}
	for _, c := range []struct{ direct, streamed string }{
		{`scrape_samples_scraped{job="node-direct"}`, `scrape_samples_scraped{job="node",publisher="DC1"}`},
		{fmt.Sprintf(`scrape_samples_scraped{job="static-direct",instance=%q}`, textHost), `scrape_samples_scraped{job="static",instance="text",publisher="DC1"}`},
		{fmt.Sprintf(`scrape_samples_scraped{job="static-direct",instance=%q}`, protoHost), `scrape_samples_scraped{job="static",instance="proto",publisher="DC1"}`},
	} {
		d, err := queryPrometheus(client, prom.base, c.direct)
		if err != nil || len(d) != 1 {
			t.Fatalf("%s: %v %v", c.direct, d, err)
		}
		if err := promValue(client, prom.base, c.streamed, float64(d[0].Value)); err != nil {
			t.Errorf("scrape_samples_scraped through the receiver differs from the direct scrape's: %v", err)
		}
	}
	for _, inst := range []string{"down", "err500"} {
		if err := promValue(client, prom.base, fmt.Sprintf(`scrape_samples_scraped{job="broken",instance=%q,publisher="DC1"}`, inst), 0); err != nil {
			t.Error(err)
		}
	}

	// The DC goes silent. Past max_age every group answers stale (503,
	// up 0); past delete_after it leaves /sd, and Prometheus ends its
	// series with staleness markers.
	poller.signal(t, syscall.SIGTERM)
	if code := poller.wait(t, stopTimeout); code != 0 {
		t.Errorf("poller exited with %s after SIGTERM", poller.cmd.ProcessState)
	}
	procs = []*process{node, receiver, prom.process}
	waitUntil(t, "every group's scrape to answer 503 stale", func() error {
		for _, g := range all {
			a, err := scrapeVia(client, sd[g])
			if err != nil {
				return err
			}
			if a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "stale") {
				return fmt.Errorf("scrape of %s: %d %s", g, a.code, a.body)
			}
		}
		return nil
	}, procs...)
	waitUntil(t, "/sd empty and no series of the DC left in Prometheus", func() error {
		if _, err := sdHas(client, recvBase); err != nil {
			return err
		}
		// Prometheus writes no staleness marker for a series with explicit
		// timestamps: it stays for the query lookback, as it would had
		// Prometheus scraped the exporter itself.
		v, err := queryPrometheus(client, prom.base, `{publisher="DC1",__name__!="streams_explicit_timestamp"}`)
		if err != nil {
			return err
		}
		if len(v) > 0 {
			return fmt.Errorf("%d series with publisher DC1 still current", len(v))
		}
		return nil
	}, procs...)
	waitUntil(t, "the receiver to forget the silent groups", metricIs(client, recvBase+"/metrics",
		"prometheus_streams_serve_groups_deleted_total", nil, float64(len(groups))), procs...)
	fams, err := families(client, recvBase+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, outcome := range []string{"ok", "failed", "stale"} {
		if v, _ := testenv.Value(fams, "prometheus_streams_serve_scrape_requests_total", map[string]string{"outcome": outcome}); v == 0 {
			t.Errorf("the receiver counted no scrape request with outcome %s", outcome)
		}
	}
	// Prometheus saw every group down before it left: the last sample of
	// each up before the staleness markers (which range functions skip)
	// is 0.
	got, err := valuesByInstance(client, prom.base, `last_over_time(up{publisher="DC1"}[1m])`)
	if err != nil {
		t.Fatal(err)
	}
	for g := range groups {
		if v, ok := got[g.instance]; !ok || v != 0 {
			t.Errorf("the last up of %s before it went stale is %v (present %v), want 0: Prometheus never saw the stale group down", g, v, ok)
		}
	}
	if err := promValue(client, prom.base, `up{job="node-direct"}`, 1); err != nil {
		t.Errorf("the direct scrape of the node exporter: %v", err)
	}
}
