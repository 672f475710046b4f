package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// jsConfig fills testdata/jetstream.yaml.tmpl: the file of the poller or
// of one receiver of a JetStream pipeline.
type jsConfig struct {
	Role           string // "poller" or "receiver"
	LogFile        string
	Interval       time.Duration
	MonitorPort    int
	NATSURL        string
	NodeURL        string        // the poller's one target, job node, instance node1
	PushgatewayURL string        // the receiver's
	PinnedTTL      time.Duration // the receiver's pinned_ttl; 0 leaves the default
	Serve          bool          // the receiver's serve_targets
}

// jsGroup is the group the poller of jetstream.yaml.tmpl publishes.
var jsGroup = group{job: "node", instance: "node1", publisher: "DC1"}

// jsGroupLabels are jsGroup's grouping key in the Pushgateway.
var jsGroupLabels = map[string]string{"job": "node", "instance": "node1", "publisher": "DC1"}

// jsPinnedTTL is the receivers' pinned_ttl in the takeover test: the
// shortest config accepts. It was 1s once, and then the pin did not stay
// with a live active receiver (its pulls expired no sooner than the TTL);
// the check that the standby was never pinned while the active one lived
// guards that.
const jsPinnedTTL = 2 * time.Second

// pinnedMetric counts the times a receiver became the active one of the
// shared JetStream consumer.
const pinnedMetric = "prometheus_streams_stream_consumer_pinned_total"

// startJSDaemon writes cfg to dir/<name>.yaml, runs the built binary in
// cfg.Role on it and waits for its /readyz (connected to JetStream). It
// returns the process and the base URL of its monitor endpoint.
func startJSDaemon(t *testing.T, dir, name string, cfg jsConfig) (*process, string) {
	t.Helper()
	cfg.LogFile = filepath.Join(dir, name+".log")
	return startRendered(t, dir, name, "jetstream.yaml.tmpl", cfg, cfg.Role, cfg.LogFile, cfg.MonitorPort)
}

// pushTime is push_time_seconds of jsGroup in the Pushgateway: when the
// Pushgateway last took a push of it.
func pushTime(c *http.Client, pgwURL string) (float64, error) {
	fams, err := families(c, pgwURL+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := testenv.Value(fams, "push_time_seconds", jsGroupLabels)
	if !ok {
		return 0, fmt.Errorf("no push_time_seconds%v in the Pushgateway yet", jsGroupLabels)
	}
	return v, nil
}

// pushedAfter returns nil once the Pushgateway took a push of jsGroup
// after at.
func pushedAfter(c *http.Client, pgwURL string, at time.Time) error {
	v, err := pushTime(c, pgwURL)
	if err != nil {
		return err
	}
	if sec := float64(at.UnixNano()) / 1e9; v <= sec {
		return fmt.Errorf("push_time_seconds = %.3f, not after %.3f", v, sec)
	}
	return nil
}

// pinnedCount is the receiver's consumer_pinned_total.
func pinnedCount(c *http.Client, base string) (float64, error) {
	fams, err := families(c, base+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := testenv.Value(fams, pinnedMetric, map[string]string{"role": "receiver"})
	if !ok {
		return 0, fmt.Errorf("%s has no %s{role=\"receiver\"}", base, pinnedMetric)
	}
	return v, nil
}

// waitForNewerPush waits until push_time_seconds of jsGroup is newer than
// when it is called: a push after this moment.
func waitForNewerPush(t *testing.T, c *http.Client, pgwURL string, watch ...*process) {
	t.Helper()
	var first float64
	waitUntil(t, "push_time_seconds in the Pushgateway", func() error {
		var err error
		first, err = pushTime(c, pgwURL)
		return err
	}, watch...)
	waitUntil(t, fmt.Sprintf("a push after push_time_seconds %.3f", first), func() error {
		v, err := pushTime(c, pgwURL)
		if err == nil && v <= first {
			err = fmt.Errorf("push_time_seconds = %.3f", v)
		}
		return err
	}, watch...)
}

// waitWithin is waitUntil with a timeout of its own. It returns how long
// cond took to come true.
func waitWithin(t *testing.T, timeout time.Duration, what string, cond func() error, watch ...*process) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			took := time.Since(start)
			t.Logf("%s: after %v", what, took.Round(time.Millisecond))
			return took
		}
		for _, p := range watch {
			if perr := p.alive(); perr != nil {
				t.Fatalf("waiting for %s: %v (last: %v)", what, perr, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// TestJetStreamConfigIntoPushgatewayAndServing runs a real node exporter,
// a poller publishing into a JetStream stream and a receiver with both
// outputs: the node exporter's scrape reaches the Pushgateway through the
// shared consumer, and the receiver serves it on /sd and /scrape through
// its own one.
func TestJetStreamConfigIntoPushgatewayAndServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.NATS(t, embedded.NATSOptions{Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})

	ports := testenv.FreePorts(t, 3)
	nodeURL := "http://" + hostPort(ports[0]) + "/metrics"
	node := startNodeExporter(t, dir, nodeURL)
	poller, _ := startJSDaemon(t, dir, "poller", jsConfig{
		Role: "poller", Interval: time.Second, MonitorPort: ports[1], NATSURL: nats.URL(), NodeURL: nodeURL,
	})
	receiver, base := startJSDaemon(t, dir, "receiver", jsConfig{
		Role: "receiver", Interval: time.Second, MonitorPort: ports[2], NATSURL: nats.URL(),
		PushgatewayURL: pgw.URL(), Serve: true,
	})
	client := newHTTPClient(t)

	waitUntil(t, "node_boot_time_seconds of node1 in the Pushgateway", func() error {
		fams, err := families(client, pgw.URL()+"/metrics")
		if err != nil {
			return err
		}
		if _, ok := testenv.Value(fams, "node_boot_time_seconds", jsGroupLabels); !ok {
			return fmt.Errorf("no node_boot_time_seconds%v in the Pushgateway", jsGroupLabels)
		}
		return nil
	}, node, poller, receiver)

	var sd map[group]sdTarget
	waitUntil(t, "the receiver's /sd to list "+jsGroup.String(), func() error {
		// The poller's own metrics are a group of their own (job
		// prometheus_streams); only node1's matters here.
		var err error
		if sd, err = fetchSD(client, base); err == nil {
			if _, ok := sd[jsGroup]; !ok {
				err = fmt.Errorf("/sd lacks %s (lists %d groups)", jsGroup, len(sd))
			}
		}
		return err
	}, node, poller, receiver)
	waitUntil(t, "the receiver's /scrape of "+jsGroup.String()+" to answer node_boot_time_seconds", func() error {
		a, err := scrapeVia(client, sd[jsGroup])
		if err != nil {
			return err
		}
		if a.code != http.StatusOK {
			return fmt.Errorf("/scrape answered %d: %s", a.code, a.body)
		}
		if !bytes.Contains(a.body, []byte("\nnode_boot_time_seconds ")) && !bytes.HasPrefix(a.body, []byte("node_boot_time_seconds ")) {
			return fmt.Errorf("/scrape body (%s) has no node_boot_time_seconds", a.contentType)
		}
		return nil
	}, node, poller, receiver)
}

// TestJetStreamReceiverKilledStandbyTakesOver runs two receivers of the
// same configuration, so they share the pinned consumer of the Pushgateway
// output: one is active, the other stands by. SIGKILL of the active one
// leaves the consumer pinned to a dead client until pinned_ttl passes;
// then the standby is pinned and the Pushgateway gets newer pushes again.
func TestJetStreamReceiverKilledStandbyTakesOver(t *testing.T) {
	// Not parallel: the check that the pin stays with the live active
	// receiver needs its pulls on time (one a second, pinned_ttl 2s),
	// which the load of other tests could delay.
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.NATS(t, embedded.NATSOptions{Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})
	exp := testenv.Exporter(t, []byte("# TYPE e2e_up gauge\ne2e_up 1\n"), testenv.TextContentType)

	ports := testenv.FreePorts(t, 3)
	poller, _ := startJSDaemon(t, dir, "poller", jsConfig{
		Role: "poller", Interval: 500 * time.Millisecond, MonitorPort: ports[0], NATSURL: nats.URL(), NodeURL: exp.URL + "/metrics",
	})
	rcfg := jsConfig{
		Role: "receiver", Interval: 500 * time.Millisecond, NATSURL: nats.URL(),
		PushgatewayURL: pgw.URL(), PinnedTTL: jsPinnedTTL,
	}
	type rcv struct {
		p    *process
		base string
	}
	var rs [2]rcv
	for i := range rs {
		rcfg.MonitorPort = ports[1+i]
		rs[i].p, rs[i].base = startJSDaemon(t, dir, fmt.Sprintf("receiver%d", i+1), rcfg)
	}
	client := newHTTPClient(t)

	// One receiver is pinned, and it pushes.
	active := -1
	waitUntil(t, "one receiver pinned and the group in the Pushgateway", func() error {
		if _, err := pushTime(client, pgw.URL()); err != nil {
			return err
		}
		var pinned [2]float64
		for i, r := range rs {
			v, err := pinnedCount(client, r.base)
			if err != nil {
				return err
			}
			pinned[i] = v
		}
		switch {
		case pinned[0] >= 1 && pinned[1] >= 1:
			return fmt.Errorf("both receivers were pinned (%v)", pinned)
		case pinned[0] >= 1:
			active = 0
		case pinned[1] >= 1:
			active = 1
		default:
			return fmt.Errorf("no receiver pinned yet (%v)", pinned)
		}
		return nil
	}, poller, rs[0].p, rs[1].p)
	standby := rs[1-active]
	t.Logf("active: %s, standby: %s", rs[active].p.name, standby.p.name)
	// The pushes go on under the active receiver, and the pin stays
	// with it: the standby, alive and pulling, is not handed the
	// consumer while the active one pulls too.
	for i := 0; i < 4; i++ {
		waitForNewerPush(t, client, pgw.URL(), poller, rs[0].p, rs[1].p)
	}
	if v, err := pinnedCount(client, standby.base); err != nil || v != 0 {
		t.Fatalf("standby %s: %s = %v (%v), want 0 while the active one runs", standby.p.name, pinnedMetric, v, err)
	}
	if v, err := pinnedCount(client, rs[active].base); err != nil || v != 1 {
		t.Fatalf("active %s: %s = %v (%v), want 1: the pin moved while both receivers ran", rs[active].p.name, pinnedMetric, v, err)
	}

	rs[active].p.signal(t, syscall.SIGKILL)
	rs[active].p.wait(t, stopTimeout)
	killed := time.Now()
	took := waitWithin(t, 20*time.Second, "a push after the SIGKILL (the standby took over)", func() error {
		return pushedAfter(client, pgw.URL(), killed)
	}, poller, standby.p)
	waitWithin(t, 20*time.Second, "the standby's "+pinnedMetric+" >= 1", func() error {
		v, err := pinnedCount(client, standby.base)
		if err == nil && v < 1 {
			err = fmt.Errorf("%s = %v", pinnedMetric, v)
		}
		return err
	}, poller, standby.p)
	// Only the generous poll timeouts above bound the takeover; how long
	// it took is recorded, not asserted.
	t.Logf("takeover: the first push after the SIGKILL came %v after it (pinned_ttl %v, scrape_interval 500ms)", took.Round(time.Millisecond), jsPinnedTTL)
}

// TestJetStreamServerRestartUnderBothDaemons restarts the JetStream server
// (file store, same port) under a running poller and receiver: both
// reconnect on their own, and new scrapes reach the Pushgateway again.
func TestJetStreamServerRestartUnderBothDaemons(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	// The restart takes the same port again: FreePort's, which a server
	// another test starts on port 0 meanwhile does not take.
	nats := testenv.NATS(t, embedded.NATSOptions{Port: testenv.FreePort(t), StoreDir: t.TempDir(), Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})
	// The exporter counts its scrapes, so the value in the Pushgateway
	// says which scrape it came from: one taken after the restart, or one
	// already in the stream before it.
	exp, served := countingExporter(t)

	ports := testenv.FreePorts(t, 2)
	poller, _ := startJSDaemon(t, dir, "poller", jsConfig{
		Role: "poller", Interval: 500 * time.Millisecond, MonitorPort: ports[0], NATSURL: nats.URL(), NodeURL: exp.URL + "/metrics",
	})
	receiver, _ := startJSDaemon(t, dir, "receiver", jsConfig{
		Role: "receiver", Interval: 500 * time.Millisecond, MonitorPort: ports[1], NATSURL: nats.URL(),
		PushgatewayURL: pgw.URL(),
	})
	client := newHTTPClient(t)
	gatewayValue := func() (float64, error) {
		fams, err := families(client, pgw.URL()+"/metrics")
		if err != nil {
			return 0, err
		}
		v, ok := testenv.Value(fams, "e2e_scrapes_total", jsGroupLabels)
		if !ok {
			return 0, fmt.Errorf("no e2e_scrapes_total%v in the Pushgateway yet", jsGroupLabels)
		}
		return v, nil
	}
	waitUntil(t, "a few scrapes in the Pushgateway", func() error {
		v, err := gatewayValue()
		if err == nil && v < 3 {
			err = fmt.Errorf("e2e_scrapes_total = %v", v)
		}
		return err
	}, poller, receiver)

	before := time.Now()
	if err := nats.Restart(); err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	restarted := time.Now()
	// Every scrape numbered above this one was taken after the restart.
	servedAtRestart := served.Load()
	t.Logf("nats-server restarted in %v; %d scrapes served before", restarted.Sub(before).Round(time.Millisecond), servedAtRestart)
	took := waitWithin(t, 30*time.Second, "a push after the nats-server restart", func() error {
		return pushedAfter(client, pgw.URL(), restarted)
	}, poller, receiver)
	tookNew := waitWithin(t, 30*time.Second, "a scrape taken after the restart in the Pushgateway", func() error {
		v, err := gatewayValue()
		if err == nil && v <= float64(servedAtRestart) {
			err = fmt.Errorf("e2e_scrapes_total = %v, not above %d", v, servedAtRestart)
		}
		return err
	}, poller, receiver)
	t.Logf("after the restart: first push %v, first push of a new scrape %v", took.Round(time.Millisecond), tookNew.Round(time.Millisecond))
	waitConnected(t, map[string]int{"poller": ports[0], "receiver": ports[1]}, poller, receiver)
	// And they keep arriving.
	again := time.Now()
	waitWithin(t, 30*time.Second, "a further push", func() error {
		return pushedAfter(client, pgw.URL(), again)
	}, poller, receiver)
}
