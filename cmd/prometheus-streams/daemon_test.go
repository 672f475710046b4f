package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestDaemonServesPprofOnlyWhenAsked(t *testing.T) {
	nats := testenv.Streaming(t, embedded.StreamingOptions{})
	exporter := testenv.Exporter(t, []byte("answer 42\n"), testenv.TextContentType)
	tests := []struct {
		name    string
		setting string
		want    int
	}{
		{"monitor_pprof true", "monitor_pprof: true\n", http.StatusOK},
		{"monitor_pprof false", "monitor_pprof: false\n", http.StatusNotFound},
		{"monitor_pprof absent", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
			file := writeFile(t, fmt.Sprintf(`identity: dc9
scrape_interval: 1s
monitor_port: %[1]s
monitor_listen: 127.0.0.1
%[2]spoller_stream: {cluster_id: %[3]s, urls: "%[4]s", topic: prometheus}
jobs:
  app:
    targets:
      - name: app1
        url: %[5]s/metrics
`, port, tt.setting, nats.ClusterID(), nats.URL(), exporter.URL))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			code := make(chan int, 1)
			var errOut testenv.SyncBuffer
			go func() {
				code <- run(ctx, []string{"--config", file, "poller"}, &testenv.SyncBuffer{}, &errOut)
			}()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			base := "http://" + net.JoinHostPort("127.0.0.1", port)
			testenv.WaitFor(t, "the monitor's /healthz", 10*time.Second, func() bool {
				resp, err := client.Get(base + "/healthz")
				if err != nil {
					return false
				}
				_ = resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			resp, err := client.Get(base + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /debug/pprof/: %d, want %d", resp.StatusCode, tt.want)
			}
			cancel()
			select {
			case c := <-code:
				if c != 0 {
					t.Fatalf("the poller exited %d\n%s", c, errOut.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the poller did not stop within 15s")
			}
		})
	}
}

// TestDaemonReloadsOnSIGHUPAndPOST runs a poller with a SIGHUP channel of
// the test's, adds a target by SIGHUP and has a changed identity refused
// by POST /-/reload.
func TestDaemonReloadsOnSIGHUPAndPOST(t *testing.T) {
	nats := testenv.Streaming(t, embedded.StreamingOptions{})
	var hitsB atomic.Int32
	a := testenv.Exporter(t, []byte("a 1\n"), testenv.TextContentType)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hitsB.Add(1)
		_, _ = w.Write([]byte("b 1\n"))
	}))
	t.Cleanup(b.Close)
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	text := fmt.Sprintf(`identity: dc9
scrape_interval: 200ms
monitor_port: %[1]s
monitor_listen: 127.0.0.1
poller_stream: {cluster_id: %[2]s, urls: "%[3]s", topic: prometheus}
jobs:
  app:
    targets:
      - {name: a, url: "%[4]s/metrics"}
`, port, nats.ClusterID(), nats.URL(), a.URL)
	file := writeFile(t, text)
	d := startDaemon(t, "--config", file, "poller")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	base := "http://" + net.JoinHostPort("127.0.0.1", port)
	metric := func(series string) bool {
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "\n"+series+"\n")
	}
	testenv.WaitFor(t, "one target", 10*time.Second, func() bool { return metric(`prometheus_streams_poller_targets{job="app"} 1`) })

	if err := os.WriteFile(file, []byte(text+fmt.Sprintf("      - {name: b, url: \"%s/metrics\"}\n", b.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.hup <- syscall.SIGHUP
	testenv.WaitFor(t, "the added target to be scraped", 10*time.Second, func() bool {
		return hitsB.Load() > 0 && metric(`prometheus_streams_poller_targets{job="app"} 2`)
	})
	if !metric(`prometheus_streams_config_reloads_total{result="success"} 1`) {
		t.Error("the reload is not counted")
	}

	if err := os.WriteFile(file, []byte(strings.Replace(text, "dc9", "dc10", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(base+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "restart to apply: identity") {
		t.Errorf("POST /-/reload with a new identity: %d %q", resp.StatusCode, body)
	}
	if !metric("prometheus_streams_config_last_reload_successful 0") || !metric(`prometheus_streams_poller_targets{job="app"} 2`) {
		t.Error("the refused reload is not recorded, or changed the targets")
	}
	d.stop()
	for _, want := range []string{"configuration reloaded", "added=1", "configuration reload refused"} {
		if !strings.Contains(d.log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, d.log.String())
		}
	}
}

// TestReceiverReloadAppliesMaxAgeDefault reloads a receiver whose file
// sets no max_age with a new scrape_interval: max_age's default (twice
// the interval) and down_after's (twice max_age) follow it live, as
// docs/operations.md says.
func TestReceiverReloadAppliesMaxAgeDefault(t *testing.T) {
	nats := testenv.Streaming(t, embedded.StreamingOptions{})
	gw := testenv.Pushgateway(t, embedded.PushgatewayOptions{})
	text := fmt.Sprintf(`identity: central
scrape_interval: 60s
receiver_stream: {cluster_id: %s, urls: "%s", topic: prometheus}
push_gateway: {url: "%s"}
`, nats.ClusterID(), nats.URL(), gw.URL())
	file := writeFile(t, text)
	d := startDaemon(t, "--config", file, "receiver")
	testenv.WaitFor(t, "the receiver to start", 10*time.Second, func() bool {
		return strings.Contains(d.log.String(), "watching the groups found in the Pushgateway")
	})
	if err := os.WriteFile(file, []byte(strings.Replace(text, "60s", "30s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.hup <- syscall.SIGHUP
	testenv.WaitFor(t, "the reload with the new defaults", 10*time.Second, func() bool {
		log := d.log.String()
		return strings.Contains(log, `msg="configuration reloaded"`) && strings.Contains(log, "max_age=1m") && strings.Contains(log, "down_after=2m")
	})
	d.stop()
}

// runningDaemon is a daemon run by runWith on a goroutine of its own.
type runningDaemon struct {
	hup  chan os.Signal      // its SIGHUP
	log  *testenv.SyncBuffer // its stderr
	stop func()              // cancels it; t fails unless it exits 0 within 15s
}

// startDaemon runs the command line args until stop or the end of t.
func startDaemon(t *testing.T, args ...string) *runningDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &runningDaemon{hup: make(chan os.Signal, 1), log: &testenv.SyncBuffer{}}
	code := make(chan int, 1)
	go func() { code <- runWith(ctx, d.hup, args, &testenv.SyncBuffer{}, d.log) }()
	d.stop = func() {
		t.Helper()
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Fatalf("%v exited %d\n%s", args, c, d.log.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%v did not stop within 15s", args)
		}
	}
	return d
}
