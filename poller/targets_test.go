package poller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// countingExporter serves the node exporter sample and records when each
// request came and the scrape timeout it announced.
type countingExporter struct {
	*httptest.Server
	mu      sync.Mutex
	times   []time.Time
	timeout string
}

func newCountingExporter(t *testing.T) *countingExporter {
	t.Helper()
	sample := testenv.Sample(t, "node_exporter.prom")
	e := &countingExporter{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.times = append(e.times, time.Now())
		e.timeout = r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds")
		e.mu.Unlock()
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = w.Write(sample)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *countingExporter) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.times)
}

// maxGap is the longest time between two requests from since on.
func (e *countingExporter) maxGap(since time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	var gap time.Duration
	last := since
	for _, at := range e.times {
		if at.Before(since) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return gap
}

func (e *countingExporter) lastTimeout() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.timeout
}

// series counts the samples in reg's families that carry instance.
func series(t *testing.T, reg *prometheus.Registry, instance string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "instance" && l.GetValue() == instance {
					n++
				}
			}
		}
	}
	return n
}

func TestSetTargetsKeepsRemovesChangesAdds(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	keep, gone, oldURL, newURL, added := newCountingExporter(t), newCountingExporter(t), newCountingExporter(t), newCountingExporter(t), newCountingExporter(t)
	const interval = 100 * time.Millisecond
	p, reg := newPoller(t, h.pub, Options{Interval: interval, Targets: []config.Target{
		{Job: "node", Name: "keep", URL: keep.URL},
		{Job: "node", Name: "gone", URL: gone.URL},
		{Job: "node", Name: "moved", URL: oldURL.URL},
	}})
	testenv.Run(t, p.Run)
	testenv.WaitFor(t, "every target to be scraped twice", 5*time.Second, func() bool {
		return keep.count() >= 2 && gone.count() >= 2 && oldURL.count() >= 2
	})
	if got := testutil.ToFloat64(p.metrics.targets.WithLabelValues("node")); got != 3 {
		t.Fatalf("targets{job=node} = %v, want 3", got)
	}
	keepLoop := p.loops["node\x00keep"]
	since := time.Now()

	ch, err := p.SetTargets(map[string][]config.Target{
		"node": {
			{Job: "node", Name: "keep", URL: keep.URL},
			{Job: "node", Name: "moved", URL: newURL.URL},
		},
		"other": {{Job: "other", Name: "added", URL: added.URL}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Changes{Added: 1, Removed: 1, Changed: 1, Unchanged: 1}); ch != want {
		t.Fatalf("changes %+v, want %+v", ch, want)
	}
	goneAfter, oldAfter := gone.count(), oldURL.count()
	if p.loops["node\x00keep"] != keepLoop {
		t.Fatal("the unchanged target's loop was replaced")
	}
	testenv.WaitFor(t, "the added target and the new URL to be scraped, and the kept one 5 more times", 5*time.Second, func() bool {
		return added.count() > 0 && newURL.count() > 0 && h.latest("added") != nil &&
			keep.count() >= 5+countBefore(keep, since)
	})
	if gap := keep.maxGap(since); gap > 2*interval {
		t.Errorf("the unchanged target went %v without a scrape across SetTargets (interval %v)", gap, interval)
	}
	if n := gone.count(); n != goneAfter {
		t.Errorf("the removed target was scraped %d times after SetTargets returned", n-goneAfter)
	}
	if n := oldURL.count(); n != oldAfter {
		t.Errorf("the changed target's old URL was scraped %d times after SetTargets returned", n-oldAfter)
	}
	if n := series(t, reg, "gone"); n != 0 {
		t.Errorf("the removed target still has %d series", n)
	}
	if n := series(t, reg, "moved"); n == 0 {
		t.Error("the changed target lost its series")
	}
	for job, want := range map[string]float64{"node": 2, "other": 1} {
		if got := testutil.ToFloat64(p.metrics.targets.WithLabelValues(job)); got != want {
			t.Errorf("targets{job=%s} = %v, want %v", job, got, want)
		}
	}

	// A job left with no targets reports 0; a job gone has no series.
	if _, err := p.SetTargets(map[string][]config.Target{"node": nil}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(p.metrics.targets.WithLabelValues("node")); got != 0 {
		t.Errorf("targets{job=node} = %v, want 0", got)
	}
	if n, err := testutil.GatherAndCount(reg, "prometheus_streams_poller_targets"); err != nil || n != 1 {
		t.Errorf("targets series: %d (%v), want only job=node", n, err)
	}
	if got := p.Targets(); len(got) != 0 {
		t.Errorf("Targets() = %v, want none", got)
	}
}

// countBefore is how many requests e had before since.
func countBefore(e *countingExporter, since time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, at := range e.times {
		if at.Before(since) {
			n++
		}
	}
	return n
}

func TestSetTargetsRefusalChangesNothing(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	exp := newCountingExporter(t)
	p, reg := newPoller(t, h.pub, Options{Targets: []config.Target{{Job: "node", Name: "a", URL: exp.URL}}})
	missingCA := commoncfg.DefaultHTTPClientConfig
	missingCA.TLSConfig.CAFile = t.TempDir() + "/nope.pem"
	withCA := commoncfg.DefaultHTTPClientConfig
	tests := []struct {
		name    string
		jobs    map[string][]config.Target
		wantErr string
	}{
		{"duplicate name", map[string][]config.Target{"node": {{Job: "node", Name: "b", URL: exp.URL}, {Job: "node", Name: "b", URL: exp.URL + "/x"}}}, `job "node" has two targets named "b"`},
		{"wrong job", map[string][]config.Target{"node": {{Job: "other", Name: "b", URL: exp.URL}}}, `is listed under job "node"`},
		{"mixed settings", map[string][]config.Target{"node": {{Job: "node", Name: "b", URL: exp.URL}, {Job: "node", Name: "c", URL: exp.URL, HTTPClient: &withCA}}}, "different HTTP client settings"},
		{"unreadable ca_file", map[string][]config.Target{"node": {{Job: "node", Name: "b", URL: exp.URL, HTTPClient: &missingCA}}}, "jobs.node: unable to read CA cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.SetTargets(tt.jobs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
			if got := p.Targets(); len(got) != 1 || got[0].Name != "a" {
				t.Fatalf("targets after a refused set: %v", got)
			}
			// Not even the series of a target the refused set would add.
			if n := series(t, reg, "b"); n != 0 {
				t.Errorf("a refused set left %d series of its target b", n)
			}
		})
	}
}

func TestSetScheduleRestartsLoops(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	exp := newCountingExporter(t)
	p, _ := newPoller(t, h.pub, Options{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Targets: []config.Target{{Job: "node", Name: "a", URL: exp.URL}}})
	testenv.Run(t, p.Run)
	testenv.WaitFor(t, "a scrape announcing 0.05s", 5*time.Second, func() bool { return exp.lastTimeout() == "0.05" })
	if changed, err := p.SetSchedule(100*time.Millisecond, 50*time.Millisecond); err != nil || changed {
		t.Fatalf("the same schedule: changed %v, err %v", changed, err)
	}
	if changed, err := p.SetSchedule(50*time.Millisecond, 20*time.Millisecond); err != nil || !changed {
		t.Fatalf("a new schedule: changed %v, err %v", changed, err)
	}
	testenv.WaitFor(t, "a scrape announcing 0.02s", 5*time.Second, func() bool { return exp.lastTimeout() == "0.02" })
	since := time.Now()
	testenv.WaitFor(t, "ten scrapes at the new interval", 5*time.Second, func() bool { return exp.count()-countBefore(exp, since) >= 10 })
	if gap := exp.maxGap(since); gap > 100*time.Millisecond {
		t.Errorf("longest gap %v at a 50ms interval", gap)
	}
	if _, err := p.SetSchedule(0, 0); err == nil {
		t.Error("a zero interval was accepted")
	}
}
