package discovery

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/poller"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingSink keeps the last set it was given, and refuses sets while
// refuse is set.
type recordingSink struct {
	mu     sync.Mutex
	jobs   map[string][]config.Target
	calls  int
	refuse error
}

func (s *recordingSink) SetTargets(jobs map[string][]config.Target) (poller.Changes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil {
		return poller.Changes{}, s.refuse
	}
	s.jobs = jobs
	s.calls++
	return poller.Changes{}, nil
}

// apply applies cfg with its static targets, and fails t if Apply does.
func apply(t *testing.T, d *Discovery, cfg *config.Config) {
	t.Helper()
	if _, err := d.Apply(cfg, cfg.Targets()); err != nil {
		t.Fatal(err)
	}
}

// applyRefused applies cfg while the sink refuses it, and fails t if
// Apply does not return the refusal.
func applyRefused(t *testing.T, d *Discovery, s *recordingSink, cfg *config.Config) {
	t.Helper()
	s.mu.Lock()
	s.refuse = errors.New("no")
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.refuse = nil
		s.mu.Unlock()
	}()
	if _, err := d.Apply(cfg, cfg.Targets()); err == nil {
		t.Fatal("Apply succeeded though the sink refused")
	}
}

func (s *recordingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// urls returns job's targets as "name=url", sorted as the set has them.
func (s *recordingSink) urls(job string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.jobs[job] {
		out = append(out, t.Name+"="+t.URL)
	}
	return out
}

// setup parses a configuration whose job node has a static target and
// file_sd_configs over dir/*.yml and dir/*.json, and returns it with a
// Discovery over a recording sink.
func setup(t *testing.T, dir string) (*config.Config, *Discovery, *recordingSink, *prometheus.Registry, *testenv.SyncBuffer) {
	t.Helper()
	cfgFile := filepath.Join(dir, "streams.yaml")
	// Relative globs resolve against the configuration file's directory.
	text := "poller_stream: {cluster_id: c, urls: 'nats://a:1', topic: t}\njobs:\n  node:\n    targets: [{name: static, url: 'http://s:9100/metrics'}]\n" +
		"    file_sd_configs:\n      - files: ['targets/*.yml', 'targets/*.json']\n        refresh_interval: 1h\n"
	cfg, err := config.Parse([]byte(text), cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	sink := &recordingSink{}
	reg := prometheus.NewRegistry()
	d, err := New(sink, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, d, sink, reg, &logs
}

// write replaces dir/targets/name atomically, as configuration management
// tools do, so the watcher never reads half a file.
func write(t *testing.T, dir, name, content string) {
	t.Helper()
	tdir := filepath.Join(dir, "targets")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(tdir, name)); err != nil {
		t.Fatal(err)
	}
}

// watching waits until the watchers have read their files n times in all.
// Prometheus's discovery/file sets its watches at the end of a read (as the
// scan duration is observed), so a change written before the first read
// ends may be seen only at the next refresh_interval.
func watching(t *testing.T, reg *prometheus.Registry, n uint64) {
	t.Helper()
	testenv.WaitFor(t, "the file watchers' reads", 10*time.Second, func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "prometheus_sd_file_scan_duration_seconds" {
				return mf.GetMetric()[0].GetSummary().GetSampleCount() >= n
			}
		}
		return false
	})
}

func waitTargets(t *testing.T, sink *recordingSink, job string, want ...string) {
	t.Helper()
	testenv.WaitFor(t, "targets "+strings.Join(want, ", "), 10*time.Second, func() bool {
		return reflect.DeepEqual(sink.urls(job), want)
	})
}

func TestFileSDTargetsFollowTheFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yml", `
- targets: ['a1:9100', 'a2:9100']
  labels: {__metrics_path__: /probe, __param_module: http_2xx, __scheme__: https}
`)
	cfg, d, sink, reg, _ := setup(t, dir)
	apply(t, d, cfg)
	// The files are read before Apply returns, before any watcher runs.
	if got, want := sink.urls("node"), []string{
		"static=http://s:9100/metrics",
		"a1:9100=https://a1:9100/probe?module=http_2xx",
		"a2:9100=https://a2:9100/probe?module=http_2xx",
	}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Apply:\n got %q\nwant %q", got, want)
	}
	testenv.Run(t, d.Run)
	watching(t, reg, 1)

	write(t, dir, "a.yml", "- targets: ['a2:9100']\n")
	waitTargets(t, sink, "node", "static=http://s:9100/metrics", "a2:9100=http://a2:9100/metrics")

	write(t, dir, "b.json", `[{"targets": ["b1:9100"], "labels": {"instance": "bee"}}]`)
	waitTargets(t, sink, "node", "static=http://s:9100/metrics", "a2:9100=http://a2:9100/metrics", "bee=http://b1:9100/metrics")

	if err := os.Remove(filepath.Join(dir, "targets", "a.yml")); err != nil {
		t.Fatal(err)
	}
	waitTargets(t, sink, "node", "static=http://s:9100/metrics", "bee=http://b1:9100/metrics")
}

func TestFileSDBadEntriesAreRefusedAndCounted(t *testing.T) {
	dir := t.TempDir()
	const file = `
- targets: ['good:9100', 'http://withscheme:9100', 'nohost:', 'static:1']
  labels: {instance: ''}
- targets: ['good:9100']
- targets: ['other:9100']
  labels: {instance: good:9100}
- targets: ['ftp:21']
  labels: {__scheme__: ftp}
- targets: ['s2:9100']
  labels: {instance: static, rack: r1}
- targets: ['labelled:9100']
  labels: {rack: r1, job: node}
`
	write(t, dir, "a.yml", file)
	cfg, d, sink, reg, logs := setup(t, dir)
	apply(t, d, cfg)
	testenv.Run(t, d.Run)
	watching(t, reg, 1)
	want := []string{"static=http://s:9100/metrics", "good:9100=http://good:9100/metrics", "static:1=http://static:1/metrics", "labelled:9100=http://labelled:9100/metrics"}
	waitTargets(t, sink, "node", want...)
	counts := map[string]float64{ReasonBadAddress: 2, ReasonBadScheme: 1, ReasonDuplicate: 2, ReasonBadURL: 0}
	check := func() {
		t.Helper()
		for reason, n := range counts {
			if got := testutil.ToFloat64(d.metrics.refused.WithLabelValues("node", reason)); got != n {
				t.Errorf("refused{reason=%s} = %v, want %v", reason, got, n)
			}
		}
		if got := testutil.ToFloat64(d.metrics.ignored.WithLabelValues("node")); got != 1 {
			t.Errorf("targets with ignored labels = %v, want 1", got)
		}
	}
	check()
	for _, text := range []string{"reason=bad_address", "reason=bad_scheme", "reason=duplicate", "file=" + filepath.Join(dir, "targets", "a.yml"), "labels=rack"} {
		if !strings.Contains(logs.String(), text) {
			t.Errorf("the log has no %q:\n%s", text, logs.String())
		}
	}
	// Read again (the watcher's refresh, or a change elsewhere in the
	// file): the same bad entries are not counted twice.
	calls := sink.count()
	write(t, dir, "a.yml", file+"- targets: ['new:9100']\n")
	defer func() {
		if t.Failed() {
			t.Log(logs.String(), sink.urls("node"))
		}
	}()
	waitTargets(t, sink, "node", append(want, "new:9100=http://new:9100/metrics")...)
	if sink.count() == calls {
		t.Fatal("no new set after the rewrite")
	}
	check()
	if n, err := testutil.GatherAndCount(reg, "prometheus_streams_poller_file_sd_targets_refused_total"); err != nil || n != 5 {
		t.Errorf("refused series: %d (%v), want one per reason", n, err)
	}
}

func TestApplyKeepsUnchangedWatchersAndRollsBack(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yml", "- targets: ['a1:9100']\n")
	cfg, d, sink, reg, _ := setup(t, dir)
	apply(t, d, cfg)
	testenv.Run(t, d.Run)
	watching(t, reg, 1)
	w := d.jobs["node"].watchers[0]

	// Same entry: the same watcher, with what it found.
	apply(t, d, cfg)
	if d.jobs["node"].watchers[0] != w {
		t.Fatal("an unchanged file_sd entry got a new watcher")
	}

	// The sink refuses: the previous configuration and watcher stay.
	other, err := config.Parse([]byte("poller_stream: {cluster_id: c, urls: 'nats://a:1', topic: t}\njobs:\n  node:\n    file_sd_configs: [{files: [other/*.yml]}]\n"), filepath.Join(dir, "streams.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applyRefused(t, d, sink, other)
	if d.jobs["node"].watchers[0] != w {
		t.Fatal("a refused Apply replaced the watcher")
	}
	write(t, dir, "a.yml", "- targets: ['a2:9100']\n")
	waitTargets(t, sink, "node", "static=http://s:9100/metrics", "a2:9100=http://a2:9100/metrics")

	// A new entry replaces the watcher; the job's old file targets go.
	apply(t, d, other)
	if got := sink.urls("node"); len(got) != 0 {
		t.Fatalf("targets after the new entry: %q", got)
	}
	// The replaced watcher's updates no longer count.
	write(t, dir, "a.yml", "- targets: ['a3:9100']\n")
	d.update(w, []*targetgroup.Group{{Source: filepath.Join(dir, "targets", "a.yml") + ":0", Targets: []model.LabelSet{{model.AddressLabel: "a3:9100"}}}})
	if got := sink.urls("node"); len(got) != 0 {
		t.Fatalf("targets after an update from the replaced watcher: %q", got)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yml", "- targets: ['a1:9100', 'bad/path']\n")
	write(t, dir, "b.json", "not json")
	cfg, _, _, _, _ := setup(t, dir)
	jobs, refused := Read(cfg, cfg.Targets())
	var got []string
	for _, tg := range jobs["node"] {
		got = append(got, tg.Name)
	}
	if want := []string{"static", "a1:9100"}; !reflect.DeepEqual(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	var reasons []string
	for _, r := range refused {
		reasons = append(reasons, r.Reason)
	}
	if want := []string{ReasonUnreadable, ReasonBadAddress}; !reflect.DeepEqual(reasons, want) {
		t.Errorf("refused %q, want %q", reasons, want)
	}
}

func TestApplySeriesFollowTheJobs(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yml", "- targets: ['a1:9100']\n")
	cfg, d, sink, reg, _ := setup(t, dir)
	apply(t, d, cfg)
	jobs := func() map[string]bool {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "prometheus_streams_poller_file_sd_") {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "job" {
						out[l.GetValue()] = true
					}
				}
			}
		}
		return out
	}
	if got := jobs(); !reflect.DeepEqual(got, map[string]bool{"node": true}) {
		t.Fatalf("series for jobs %v, want node", got)
	}
	other, err := config.Parse([]byte("poller_stream: {cluster_id: c, urls: 'nats://a:1', topic: t}\njobs:\n  other:\n    file_sd_configs: [{files: [targets/*.yml]}]\n"), filepath.Join(dir, "streams.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applyRefused(t, d, sink, other)
	if got := jobs(); !reflect.DeepEqual(got, map[string]bool{"node": true}) {
		t.Fatalf("after a refused Apply, series for jobs %v, want node only", got)
	}
	apply(t, d, other)
	if got := jobs(); !reflect.DeepEqual(got, map[string]bool{"other": true}) {
		t.Fatalf("after node was removed, series for jobs %v, want other only", got)
	}
}

func TestApplyRefusesClientSettingsOfAJobWithoutTargetsYet(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yml", "[]\n") // no target yet: the poller builds no client
	text := "poller_stream: {cluster_id: c, urls: 'nats://a:1', topic: t}\njobs:\n  node:\n" +
		"    tls_config: {ca_file: " + filepath.Join(dir, "missing-ca.pem") + "}\n" +
		"    file_sd_configs: [{files: [targets/*.yml]}]\n"
	cfg, err := config.Parse([]byte(text), filepath.Join(dir, "streams.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, d, sink, _, _ := setup(t, dir)
	_, err = d.Apply(cfg, cfg.Targets())
	if err == nil || !strings.Contains(err.Error(), "poller: jobs.node") || !strings.Contains(err.Error(), "missing-ca.pem") {
		t.Fatalf("Apply with an unreadable ca_file: %v, want an error naming jobs.node and the file", err)
	}
	if n := sink.count(); n != 0 {
		t.Fatalf("the sink was given %d sets, want none", n)
	}
}
