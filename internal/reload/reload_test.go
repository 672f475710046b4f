package reload

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const pollerFile = `identity: dc1
scrape_interval: 10s
poller_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}
jobs:
  node:
    targets: [{url: 'http://a:9100/metrics'}]
`

// recorder is an Applier that records the configurations it applied and
// fails while err is set. It also notices two Applies at once.
type recorder struct {
	mu      sync.Mutex
	applied []*config.Config
	err     error
	busy    atomic.Bool
	overlap atomic.Bool
}

func (r *recorder) Apply(_ context.Context, cfg *config.Config) ([]any, error) {
	if !r.busy.CompareAndSwap(false, true) {
		r.overlap.Store(true)
	}
	defer r.busy.Store(false)
	time.Sleep(time.Millisecond) // widen the window an overlap would show in
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.applied = append(r.applied, cfg)
	return []any{"targets", len(cfg.Targets())}, nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

func setup(t *testing.T) (string, *Reloader, *recorder, *prometheus.Registry, *testenv.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "streams.yaml")
	writeConfig(t, path, pollerFile)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	var logs testenv.SyncBuffer
	r, err := New(Options{Path: path, Role: config.RolePoller, Current: cfg, Applier: rec}, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return path, r, rec, reg, &logs
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReload(t *testing.T) {
	path, r, rec, _, logs := setup(t)
	m := r.metrics
	if testutil.ToFloat64(m.successful) != 1 || testutil.ToFloat64(m.successTime) == 0 {
		t.Fatal("the start does not count as a successful load")
	}
	for _, result := range []string{resultSuccess, resultFailure} {
		if got := testutil.ToFloat64(m.reloads.WithLabelValues(result)); got != 0 {
			t.Fatalf("reloads_total{result=%s} = %v at start", result, got)
		}
	}
	added := strings.Replace(pollerFile, "targets: [{url: 'http://a:9100/metrics'}]", "targets: [{url: 'http://a:9100/metrics'}, {url: 'http://b:9100/metrics'}]", 1)
	tests := []struct {
		name      string
		text      string
		applyErr  error
		wantErr   string // "" for success
		wantApply int
	}{
		{"a target added", added, nil, "", 1},
		{"scrape_interval too", strings.Replace(added, "10s", "20s", 1), nil, "", 1},
		{"a syntax error", added + "jobs: [\n", nil, path + ":7: ", 0},
		{"invalid for the role", strings.Replace(added, "topic: t", "topic: ''", 1), nil, path + ":3: poller_stream.topic: required for the poller", 0},
		{
			"a key that needs a restart", strings.Replace(strings.Replace(added, "dc1", "dc2", 1), "nats://a:4222", "nats://b:4222", 1), nil,
			path + ": restart to apply: identity, poller_stream.urls (nothing was applied)", 0,
		},
		{"the applier refuses", strings.Replace(added, "http://b:9100", "http://c:9100", 1), errors.New("jobs.node: unable to read CA cert"), path + ": apply: jobs.node: unable to read CA cert (nothing was applied)", 0},
		// The refused attempts left the last applied file current: the
		// interval of 20s is no change now.
		{"back to a good file", strings.Replace(added, "10s", "20s", 1), nil, "", 1},
	}
	var successes, failures float64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeConfig(t, path, tt.text)
			rec.mu.Lock()
			rec.err = tt.applyErr
			rec.mu.Unlock()
			before := rec.count()
			stamp := testutil.ToFloat64(m.successTime)
			err := r.Reload(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Reload: %v", err)
				}
				successes++
				if testutil.ToFloat64(m.successful) != 1 || testutil.ToFloat64(m.successTime) < stamp {
					t.Error("a successful reload is not recorded")
				}
			} else {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Reload: %v, want an error starting %q", err, tt.wantErr)
				}
				failures++
				if testutil.ToFloat64(m.successful) != 0 || testutil.ToFloat64(m.successTime) != stamp {
					t.Error("a refused reload is not recorded as such")
				}
				if !strings.Contains(logs.String(), "configuration reload refused") {
					t.Error("the refusal is not logged")
				}
			}
			if got := rec.count() - before; got != tt.wantApply {
				t.Errorf("applied %d times, want %d", got, tt.wantApply)
			}
			if got := testutil.ToFloat64(m.reloads.WithLabelValues(resultSuccess)); got != successes {
				t.Errorf("reloads_total{result=success} = %v, want %v", got, successes)
			}
			if got := testutil.ToFloat64(m.reloads.WithLabelValues(resultFailure)); got != failures {
				t.Errorf("reloads_total{result=failure} = %v, want %v", got, failures)
			}
		})
	}
	if !strings.Contains(logs.String(), `msg="configuration reloaded"`) || !strings.Contains(logs.String(), "targets=2") {
		t.Errorf("the success is not logged with what changed:\n%s", logs.String())
	}
}

func TestSIGHUPAndConcurrentReloadsAreSerialised(t *testing.T) {
	_, r, rec, _, _ := setup(t)
	hup := make(chan os.Signal, 1)
	testenv.Run(t, func(ctx context.Context) error { return r.Run(ctx, hup) })
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if err := r.Reload(context.Background()); err != nil {
				t.Errorf("Reload: %v", err)
			}
		})
	}
	hup <- syscall.SIGHUP
	wg.Wait()
	testenv.WaitFor(t, "the SIGHUP reload", 5*time.Second, func() bool { return rec.count() == 6 })
	if rec.overlap.Load() {
		t.Fatal("two reloads applied at once")
	}
}

func TestReloadWaitsWithItsContextAndStopsWithRun(t *testing.T) {
	_, r, rec, _, _ := setup(t)
	// Another reload holds the turn: a caller whose context ends gives up.
	r.turn <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Reload(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reload while another runs, context done: %v, want context.Canceled", err)
	}
	<-r.turn

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx, make(chan os.Signal)) }()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The components have stopped: a reload through the monitor, which
	// still answers during shutdown, changes nothing.
	if err := r.Reload(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Reload after Run returned: %v, want ErrStopped", err)
	}
	if n := rec.count(); n != 0 {
		t.Fatalf("%d configurations applied, want none", n)
	}
}
