package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/channeltest"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// maxPeakRSS bounds each daemon's peak resident set (VmHWM).
const maxPeakRSS = 256 << 20

// TestFaultReceiverSIGKILLResumesDurable kills the receiver with SIGKILL
// and starts it again on the same file: its durable subscription resumes
// where it was, and the scrapes published while it was down reach the
// Pushgateway. It also reports both daemons' peak RSS.
func TestFaultReceiverSIGKILLResumesDurable(t *testing.T) {
	// Not parallel: the slack for deliveries unacknowledged at the kill
	// assumes a receiver that keeps up with the 250ms interval.
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})
	// The exporter counts its scrapes, so a value in the Pushgateway says
	// which scrape it came from.
	exp, _ := countingExporter(t)
	obs := observeChannel(t, nats)

	ports := testenv.FreePorts(t, 2)
	cfg := streamsConfig{ClusterID: nats.ClusterID(), NATSURLs: nats.URL(), PushgatewayURL: pgw.URL(), NodeURL: exp.URL + "/metrics"}
	poller, receiver := startFastDaemons(t, dir, cfg, ports[0], ports[1])
	client := newHTTPClient(t)
	series := `e2e_scrapes_total{job="node",instance="node1",publisher="DC1"}`
	gatewayValue := func() (float64, error) {
		fams, err := families(client, pgw.URL()+"/metrics")
		if err != nil {
			return 0, err
		}
		v, ok := testenv.Value(fams, "e2e_scrapes_total", map[string]string{"job": "node", "instance": "node1", "publisher": "DC1"})
		if !ok {
			return 0, fmt.Errorf("%s not in the Pushgateway yet", series)
		}
		return v, nil
	}
	waitUntil(t, "a few scrapes through the pipeline", func() error {
		if _, err := gatewayValue(); err != nil {
			return err
		}
		if n := obs.total(); n < 8 {
			return fmt.Errorf("%d messages on the channel", n)
		}
		return nil
	}, poller, receiver)

	type peakRSS struct {
		name  string
		bytes int64
	}
	peak := []peakRSS{{"receiver (before SIGKILL)", vmHWM(t, receiver)}}
	receiver.signal(t, syscall.SIGKILL)
	receiver.wait(t, stopTimeout)
	atKill := obs.mark()
	valueAtKill, err := gatewayValue()
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "3 node scrapes published while the receiver is down", func() error {
		if n := obs.nodeSince(atKill); n < 3 {
			return fmt.Errorf("%d node scrapes published since the kill", n)
		}
		return nil
	}, poller)
	// Stop the poller, so the newest scrape is one published while the
	// receiver was down.
	peak = append(peak, peakRSS{"poller", vmHWM(t, poller)})
	poller.signal(t, syscall.SIGTERM)
	if code := poller.wait(t, stopTimeout); code != 0 {
		t.Errorf("poller exited with %s after SIGTERM", poller.cmd.ProcessState)
	}
	if v, _ := gatewayValue(); v != valueAtKill {
		t.Fatalf("%s changed from %v to %v while the receiver was dead", series, valueAtKill, v)
	}

	start := time.Now()
	again := startProcess(t, dir, "receiver-again", []string{filepath.Join(dir, "receiver.yaml.log")}, binary,
		"receiver", "--config", filepath.Join(dir, "receiver.yaml"))
	monitor := "http://" + hostPort(ports[1])
	waitUntil(t, "the restarted receiver's /readyz (the server replaces the dead client ID)", func() error {
		_, err := get(client, monitor+"/readyz")
		return err
	}, again)
	ready := time.Since(start)
	newest, downMsgs := obs.newestNode(), obs.since(atKill)
	waitUntil(t, fmt.Sprintf("%s = %v, the newest scrape, published while the receiver was down", series, newest), func() error {
		v, err := gatewayValue()
		if err == nil && v != newest {
			err = fmt.Errorf("%s = %v", series, v)
		}
		return err
	}, again)
	// The durable resumed where the killed receiver left it: it got what
	// was published while it was down, plus the few deliveries it had not
	// acknowledged when it died, and not the channel from the start.
	var received float64
	waitUntil(t, "the restarted receiver to receive the backlog", func() error {
		fams, err := families(client, monitor+"/metrics")
		if err != nil {
			return err
		}
		received, _ = testenv.Value(fams, "prometheus_streams_receiver_messages_received_total", nil)
		if received < float64(downMsgs) {
			return fmt.Errorf("received %v of the %d messages published while it was down", received, downMsgs)
		}
		return nil
	}, again)
	t.Logf("restarted receiver: ready after %v; received %v messages, %d published while it was down, %d on the channel in all; %s went from %v to %v",
		ready.Round(time.Millisecond), received, downMsgs, obs.total(), series, valueAtKill, newest)
	if slack := 4.0; received > float64(downMsgs)+slack {
		t.Errorf("the restarted receiver received %v messages, more than the %d published while it was down plus %v unacknowledged: the durable did not resume where it was",
			received, downMsgs, slack)
	}

	peak = append(peak, peakRSS{"receiver (restarted, before SIGTERM)", vmHWM(t, again)})
	again.signal(t, syscall.SIGTERM)
	if code := again.wait(t, stopTimeout); code != 0 {
		t.Errorf("restarted receiver exited with %s after SIGTERM", again.cmd.ProcessState)
	}
	for _, p := range peak {
		t.Logf("peak RSS (VmHWM) %-38s %6.1f MiB (race detector: %v)", p.name, float64(p.bytes)/(1<<20), raceEnabled)
		if p.bytes >= maxPeakRSS {
			t.Errorf("%s: peak RSS %.1f MiB, want under %d MiB", p.name, float64(p.bytes)/(1<<20), maxPeakRSS>>20)
		}
	}
}

// startFastDaemons is startDaemons with a 250ms scrape interval instead of
// the 1.0 file's 1s, so the test waits for fewer seconds.
func startFastDaemons(t *testing.T, dir string, cfg streamsConfig, pollerMon, receiverMon int) (poller, receiver *process) {
	t.Helper()
	start := func(role string, mon int) *process {
		cfg.MonitorPort = mon
		cfg.LogFile = filepath.Join(dir, role+".yaml.log")
		file := render(t, "prometheus-streams-1.0.yaml.tmpl", cfg)
		fast := bytes.Replace(file, []byte("\nscrape_interval: 1s\n"), []byte("\nscrape_interval: 250ms\n"), 1)
		if bytes.Equal(fast, file) {
			t.Fatal("the 1.0 template no longer has scrape_interval: 1s")
		}
		path := writeFile(t, dir, role+".yaml", fast)
		return startProcess(t, dir, role, []string{cfg.LogFile}, binary, role, "--config", path)
	}
	poller = start("poller", pollerMon)
	receiver = start("receiver", receiverMon)
	client := newHTTPClient(t)
	for role, port := range map[string]int{"poller": pollerMon, "receiver": receiverMon} {
		waitUntil(t, role+" /readyz", func() error {
			_, err := get(client, "http://"+hostPort(port)+"/readyz")
			return err
		}, poller, receiver)
	}
	return poller, receiver
}

// vmHWM reads the process's peak resident set size from /proc.
func vmHWM(t *testing.T, p *process) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: VmHWM %q: %v", p.name, rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("%s: no VmHWM in /proc/%d/status", p.name, p.cmd.Process.Pid)
	return 0
}

// families GETs a /metrics page and parses it.
func families(c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	b, err := get(c, url)
	if err != nil {
		return nil, err
	}
	return parseText(b)
}

// channelObserver is a second durable subscriber on the channel: it sees
// every message the poller publishes, independently of the receiver.
type channelObserver struct {
	mu     sync.Mutex
	all    int     // messages
	node   int     // messages of job node
	newest float64 // e2e_scrapes_total of the newest node scrape
}

func observeChannel(t *testing.T, s *embedded.Streaming) *channelObserver {
	t.Helper()
	o := &channelObserver{}
	channeltest.Observe(t, s, "prometheus", "e2e-observer", func(env *envelope.Envelope) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.all++
		if env.Job != "node" || env.Outcome != envelope.OutcomeSuccess {
			return
		}
		o.node++
		body, err := env.Body(nil, 1<<20)
		if err != nil {
			t.Errorf("node scrape body: %v", err)
			return
		}
		fams, err := parseText(body)
		if err != nil {
			t.Errorf("node scrape body: %v", err)
			return
		}
		if v, ok := testenv.Value(fams, "e2e_scrapes_total", nil); ok {
			o.newest = max(o.newest, v)
		}
	})
	return o
}

type observerMark struct{ all, node int }

func (o *channelObserver) mark() observerMark {
	o.mu.Lock()
	defer o.mu.Unlock()
	return observerMark{o.all, o.node}
}

func (o *channelObserver) total() int { return o.mark().all }

func (o *channelObserver) since(m observerMark) int { return o.mark().all - m.all }

func (o *channelObserver) nodeSince(m observerMark) int { return o.mark().node - m.node }

func (o *channelObserver) newestNode() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.newest
}

func parseText(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}
