package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/internal/loadtest"
)

// TestBenchHarness runs the load harness small, through the built binary
// (whose poller, receiver and floor run as child processes), and checks
// that every phase measured something and the backlog was drained. The
// figures themselves are for docs/performance.md, not for a test.
func TestBenchHarness(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile(filepath.Join(root, "testdata", "node_exporter.prom"))
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := loadtest.Run(ctx, loadtest.Options{
		Executable:   binary,
		Sample:       sample,
		Targets:      30,
		PerPort:      10,
		Interval:     time.Second,
		Window:       2 * time.Second,
		Backlog:      300,
		FloorScrapes: 100,
		ProfileDir:   t.TempDir(),
		Progress:     &progress,
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"floor CPU per scrape > 0", res.FloorCPUPerScrape > 0},
		{"floor message near the sample's snappy size", res.FloorBytes > 10_000 && res.FloorBytes < 20_000},
		{"poller scraped in the window", res.PollerScrapes >= 30},
		{"poller CPU per scrape > 0", res.PollerCPUPerScrape > 0},
		{"poller message bytes near the floor's", res.MessageBytes > 10_000 && res.MessageBytes < 20_000},
		{"pushes timed in the window", res.Pushes >= 30 && res.LatencyP50 > 0 && res.LatencyP99 >= res.LatencyP50},
		{"peak RSS of both daemons", res.PollerPeakRSS > 0 && res.ReceiverPeakRSS > 0 && res.DrainPeakRSS > 0},
		{"raw PUTs all done", res.RawPUTs == 300 && !res.RawTimedOut && res.RawPUTRate > 0},
		{"backlog drained", res.BacklogMessages == 300 && res.Drained >= 300 && !res.DrainTimedOut && res.DrainPushes > 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: result %+v", c.what, *res)
		}
	}
	for _, p := range []string{"poller.cpu.pprof", "receiver.cpu.pprof", "receiver-drain.cpu.pprof"} {
		if fi, err := os.Stat(filepath.Join(res.Options.ProfileDir, p)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	var out bytes.Buffer
	if err := loadtest.Report(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"x the floor", "p50", "PUT/s", "x the raw PUT rate", "peak RSS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
