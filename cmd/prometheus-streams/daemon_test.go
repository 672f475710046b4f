package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
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
