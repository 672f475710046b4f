package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// reloadConfig fills testdata/reload.yaml.tmpl.
type reloadConfig struct {
	LogFile        string
	Interval       time.Duration
	MonitorPort    int
	ClusterID      string
	NATSURL        string
	PushgatewayURL string
	Targets        []reloadTarget
}

type reloadTarget struct{ Name, URL string }

// hitExporter serves a small exposition and records when it was scraped.
type hitExporter struct {
	*httptest.Server
	mu   sync.Mutex
	hits []time.Time
}

func newHitExporter(t *testing.T, name string) *hitExporter {
	t.Helper()
	e := &hitExporter{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.mu.Lock()
		e.hits = append(e.hits, time.Now())
		e.mu.Unlock()
		w.Header().Set("Content-Type", testenv.TextContentType)
		fmt.Fprintf(w, "# TYPE e2e_reload_target gauge\ne2e_reload_target{name=%q} 1\n", name)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *hitExporter) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.hits)
}

// maxGap is the longest time without a scrape between from and to.
func (e *hitExporter) maxGap(from, to time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maxGap(e.hits, from, to)
}

// maxGap is the longest stretch of [from, to] without a time of ts.
func maxGap(ts []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	last := from
	for _, at := range ts {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// pushTimes samples a group's push_time_seconds in the Pushgateway every
// 50ms until the test ends, keeping each distinct value.
type pushTimes struct {
	mu    sync.Mutex
	times []time.Time
}

func samplePushTimes(t *testing.T, client *http.Client, pgwURL string, group map[string]string) *pushTimes {
	t.Helper()
	p := &pushTimes{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if fams, err := families(client, pgwURL+"/metrics"); err == nil {
				if v, ok := testenv.Value(fams, "push_time_seconds", group); ok {
					at := time.Unix(0, int64(v*1e9))
					p.mu.Lock()
					if n := len(p.times); n == 0 || !p.times[n-1].Equal(at) {
						p.times = append(p.times, at)
					}
					p.mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return p
}

func (p *pushTimes) latest() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.times) == 0 {
		return time.Time{}
	}
	return p.times[len(p.times)-1]
}

func (p *pushTimes) maxGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maxGap(p.times, from, to)
}

// post POSTs to url and returns the status and body.
func post(c *http.Client, url string) (int, string, error) {
	resp, err := c.Post(url, "", nil)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricIs returns a condition for waitUntil: the series of name with
// labels on the page at url has the value want.
func metricIs(c *http.Client, url, name string, labels map[string]string, want float64) func() error {
	return func() error {
		fams, err := families(c, url)
		if err != nil {
			return err
		}
		if v, ok := testenv.Value(fams, name, labels); !ok || v != want {
			return fmt.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
		}
		return nil
	}
}

// TestReloadWhileDataFlows runs the built poller and receiver against real
// NATS Streaming and a real Pushgateway and, while scrapes flow, reloads
// the poller with SIGHUP on a file that adds a target and removes another,
// then refuses a broken file on POST /-/reload, then picks up a target
// from a file_sd file without any reload. The untouched target's data must
// never stop, and the poller's stream connection must never be redone.
func TestReloadWhileDataFlows(t *testing.T) {
	// Not parallel: it bounds the untouched target's gaps across the
	// reload to a few intervals.
	const interval = 500 * time.Millisecond
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})
	keep, gone, added, filed := newHitExporter(t, "keep"), newHitExporter(t, "gone"), newHitExporter(t, "added"), newHitExporter(t, "filed")
	// The file_sd directory exists from the start, so that the watch on
	// it is set at the first read.
	if err := os.Mkdir(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}

	ports := testenv.FreePorts(t, 2)
	cfg := reloadConfig{Interval: interval, ClusterID: nats.ClusterID(), NATSURL: nats.URL(), PushgatewayURL: pgw.URL()}
	write := func(role string, port int, targets ...*hitExporter) string {
		c := cfg
		c.MonitorPort, c.LogFile = port, filepath.Join(dir, role+".log")
		for _, e := range targets {
			name := map[*hitExporter]string{keep: "keep", gone: "gone", added: "added"}[e]
			c.Targets = append(c.Targets, reloadTarget{Name: name, URL: e.URL + "/metrics"})
		}
		return writeFile(t, dir, role+".yaml", render(t, "reload.yaml.tmpl", c))
	}
	pollerFile := write("poller", ports[0], keep, gone)
	receiverFile := write("receiver", ports[1], keep, gone)
	poller := startProcess(t, dir, "poller", []string{filepath.Join(dir, "poller.log")}, binary, "poller", "--config", pollerFile)
	receiver := startProcess(t, dir, "receiver", []string{filepath.Join(dir, "receiver.log")}, binary, "receiver", "--config", receiverFile)
	client := newHTTPClient(t)
	pollerMetrics := "http://" + hostPort(ports[0]) + "/metrics"
	group := func(instance string) map[string]string {
		return map[string]string{"job": "app", "instance": instance, "publisher": "DC1"}
	}
	inGateway := func(instance string) func() error {
		return func() error {
			fams, err := families(client, pgw.URL()+"/metrics")
			if err != nil {
				return err
			}
			if _, ok := testenv.Value(fams, "e2e_reload_target", group(instance)); !ok {
				return fmt.Errorf("no group %s in the Pushgateway", instance)
			}
			return nil
		}
	}
	waitUntil(t, "the keep and gone groups in the Pushgateway", func() error {
		if err := inGateway("keep")(); err != nil {
			return err
		}
		return inGateway("gone")()
	}, poller, receiver)
	keepPushes := samplePushTimes(t, client, pgw.URL(), group("keep"))
	waitUntil(t, "keep's pushes to be sampled", func() error {
		if keepPushes.latest().IsZero() {
			return fmt.Errorf("no push_time_seconds for keep yet")
		}
		return nil
	}, poller, receiver)

	// 1. SIGHUP with added in and gone out.
	reloadStart := time.Now()
	write("poller", ports[0], keep, added)
	poller.signal(t, syscall.SIGHUP)
	// Counted once the poller's set changed, so gone's loop has stopped.
	waitUntil(t, "the reload counted as a success", metricIs(client, pollerMetrics, "prometheus_streams_config_reloads_total", map[string]string{"result": "success"}, 1), poller)
	waitUntil(t, "the added group in the Pushgateway", inGateway("added"), poller, receiver)
	goneHits := gone.count()
	keepHits := keep.count()
	waitUntil(t, "keep to be scraped 4 more times", func() error {
		if n := keep.count() - keepHits; n < 4 {
			return fmt.Errorf("%d more scrapes of keep", n)
		}
		return nil
	}, poller)
	if n := gone.count() - goneHits; n != 0 {
		t.Errorf("the removed target was scraped %d more times after the reload took effect", n)
	}
	pushesAfter := keepPushes.latest()
	reloadEnd := time.Now()
	scrapeGap, pushGap := keep.maxGap(reloadStart, reloadEnd), keepPushes.maxGap(reloadStart, pushesAfter)
	t.Logf("across the reload the untouched target's longest gap was %v between scrapes, %v between pushes (interval %v)", scrapeGap, pushGap, interval)
	// A loop that stopped would leave a gap of several intervals; one
	// interval of slack is for a loaded CI machine running every package
	// under the race detector at once.
	if scrapeGap > 3*interval {
		t.Errorf("the untouched target went %v without a scrape across the reload (interval %v)", scrapeGap, interval)
	}
	// The sampling every 50ms and the receiver's own pace add to the gap
	// between two pushes.
	if pushGap > 3*interval+200*time.Millisecond {
		t.Errorf("the untouched target's group went %v without a push across the reload (interval %v)", pushGap, interval)
	}
	if err := metricIs(client, pollerMetrics, "prometheus_streams_poller_targets", map[string]string{"job": "app"}, 2)(); err != nil {
		t.Error(err)
	}

	// 2. A broken file: refused with the reason, the running one stays.
	broken := strings.Replace(string(render(t, "reload.yaml.tmpl", cfg)), "scrape_interval:", "scrape_intervall:", 1)
	writeFile(t, dir, "poller.yaml", []byte(broken))
	code, body, err := post(client, "http://"+hostPort(ports[0])+"/-/reload")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInternalServerError || !strings.Contains(body, pollerFile+":") || !strings.Contains(body, "scrape_intervall") {
		t.Errorf("POST /-/reload of a broken file: %d %q, want 500 naming the file, line and key", code, body)
	}
	waitUntil(t, "last_reload_successful 0", metricIs(client, pollerMetrics, "prometheus_streams_config_last_reload_successful", nil, 0), poller)
	refusedAt := keepPushes.latest()
	waitUntil(t, "keep's data to keep flowing after the refusal", func() error {
		if !keepPushes.latest().After(refusedAt) {
			return fmt.Errorf("no push of keep since %v", refusedAt)
		}
		return nil
	}, poller, receiver)

	// 3. A target from a file_sd file, without any reload.
	sd := fmt.Sprintf("- targets: [%q]\n  labels: {instance: filed}\n", strings.TrimPrefix(filed.URL, "http://"))
	writeFile(t, filepath.Join(dir, "targets"), "dc1.yml", []byte(sd))
	waitUntil(t, "the file_sd target's group in the Pushgateway", inGateway("filed"), poller, receiver)
	for result, want := range map[string]float64{"success": 1, "failure": 1} {
		if err := metricIs(client, pollerMetrics, "prometheus_streams_config_reloads_total", map[string]string{"result": result}, want)(); err != nil {
			t.Error(err)
		}
	}
	// The poller's stream connection was made once and never lost, not
	// even its TCP connection underneath.
	for name, want := range map[string]float64{
		"prometheus_streams_stream_connect_attempts_total": 1,
		"prometheus_streams_stream_connections_lost_total": 0,
		"prometheus_streams_stream_nats_reconnects_total":  0,
	} {
		labels := map[string]string{}
		if strings.HasSuffix(name, "attempts_total") {
			labels["result"] = "success"
		}
		if err := metricIs(client, pollerMetrics, name, labels, want)(); err != nil {
			t.Errorf("the stream connection was redone: %v", err)
		}
	}
	if filed.count() == 0 {
		t.Error("the file_sd target's exporter saw no scrape")
	}
}
