package discovery

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// The groups a new watcher starts from (Apply reads its files itself) must
// follow the files as Prometheus's own would, although its discovery/file
// never saw them and so never reports their deletion.

const (
	static  = "static=http://s:9100/metrics"
	a1      = "a1:9100=http://a1:9100/metrics"
	a2      = "a2:9100=http://a2:9100/metrics"
	a3      = "a3:9100=http://a3:9100/metrics"
	b1      = "b1:9100=http://b1:9100/metrics"
	twoOfA  = "- targets: ['a1:9100']\n- targets: ['a2:9100']\n"
	oneOfA  = "- targets: ['a3:9100']\n"
	halfOfA = "- targets: ['a1:9100'\n"
)

// fileChange is what happens to targets/a.yml in a scenario.
type fileChange struct {
	name   string
	change func(t *testing.T, dir string)
	want   []string
}

var fileChanges = []fileChange{
	{
		name: "deleted",
		change: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "targets", "a.yml")); err != nil {
				t.Fatal(err)
			}
		},
		want: []string{static},
	},
	{
		name:   "rewritten with fewer groups",
		change: func(t *testing.T, dir string) { write(t, dir, "a.yml", oneOfA) },
		want:   []string{static, a3},
	},
	{
		name:   "rewritten as no groups",
		change: func(t *testing.T, dir string) { write(t, dir, "a.yml", "[]\n") },
		want:   []string{static},
	},
}

// A file changed after Apply read it but before the watcher's first read:
// the watcher never sees what Apply read.
func TestSeededFileChangedBeforeFirstRead(t *testing.T) {
	t.Parallel()
	for _, tc := range fileChanges {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write(t, dir, "a.yml", twoOfA)
			cfg, d, sink, _, _ := setup(t, dir)
			apply(t, d, cfg)
			if got, want := sink.urls("node"), []string{static, a1, a2}; !reflect.DeepEqual(got, want) {
				t.Fatalf("after Apply: got %q, want %q", got, want)
			}
			// Apply started no watcher: Run is not running yet.
			tc.change(t, dir)
			testenv.Run(t, d.Run)
			waitTargets(t, sink, "node", tc.want...)
		})
	}
}

// A file unreadable (half-written) when a reload replaces its watcher keeps
// the targets it gave before, as long as it stays unreadable; then it is
// deleted or fixed, which the new watcher reports only in part.
func TestReloadWithUnreadableFile(t *testing.T) {
	t.Parallel()
	for _, tc := range fileChanges {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write(t, dir, "a.yml", twoOfA)
			cfg, d, sink, reg, _ := setup(t, dir)
			apply(t, d, cfg)
			testenv.Run(t, d.Run)
			watching(t, reg, 1)
			write(t, dir, "a.yml", halfOfA)
			watching(t, reg, 2) // the old watcher saw it, so the new one's first read is the third

			// Only refresh_interval changes, which takes a new watcher.
			reloaded := reload(t, dir, "2h")
			apply(t, d, reloaded)
			if got, want := sink.urls("node"), []string{static, a1, a2}; !reflect.DeepEqual(got, want) {
				t.Fatalf("after the reload: got %q, want %q", got, want)
			}
			watching(t, reg, 3)

			// Another file coming and going makes the new watcher report
			// twice; a.yml, still unreadable, keeps its targets throughout.
			write(t, dir, "b.yml", "- targets: ['b1:9100']\n")
			waitTargets(t, sink, "node", static, a1, a2, b1)
			if err := os.Remove(filepath.Join(dir, "targets", "b.yml")); err != nil {
				t.Fatal(err)
			}
			waitTargets(t, sink, "node", static, a1, a2)

			tc.change(t, dir)
			waitTargets(t, sink, "node", tc.want...)
		})
	}
}

// reload parses setup's configuration with another refresh_interval.
func reload(t *testing.T, dir, refresh string) *config.Config {
	t.Helper()
	text := "poller_stream: {cluster_id: c, urls: 'nats://a:1', topic: t}\njobs:\n  node:\n    targets: [{name: static, url: 'http://s:9100/metrics'}]\n" +
		"    file_sd_configs:\n      - files: ['targets/*.yml', 'targets/*.json']\n        refresh_interval: " + refresh + "\n"
	cfg, err := config.Parse([]byte(text), filepath.Join(dir, "streams.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
