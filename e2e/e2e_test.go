package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Debian's packages; the test runs the binaries they install.
const (
	prometheusBin   = "/usr/bin/prometheus"
	nodeExporterBin = "/usr/bin/prometheus-node-exporter"
)

// stopTimeout bounds how long poller and receiver may take to exit after
// SIGTERM or SIGINT.
const stopTimeout = 15 * time.Second

// requireDebianPrometheus skips the test when Debian's prometheus or
// prometheus-node-exporter is missing, and fails it instead when CI is set
// (CI systems set CI=true), where a skip would hide that the end-to-end
// test never ran.
func requireDebianPrometheus(t *testing.T) {
	t.Helper()
	for _, bin := range []string{prometheusBin, nodeExporterBin} {
		if _, err := os.Stat(bin); err != nil {
			const msg = "install Debian's prometheus and prometheus-node-exporter: apt-get install -y prometheus prometheus-node-exporter"
			if _, ci := os.LookupEnv("CI"); ci {
				t.Fatalf("%s (%v)", msg, err)
			}
			t.Skipf("%s (%v)", msg, err)
		}
	}
}

// TestOneDotZeroConfigIntoRealPrometheus is the "done when": a 1.0
// configuration file scraping a real node exporter delivers its series,
// labelled job/instance/publisher, through NATS Streaming and a
// Pushgateway into Debian's Prometheus; the poller's own metrics arrive as
// job prometheus_streams; a dead target shows up as up 0; and both daemons
// exit 0, the poller on SIGTERM and the receiver on SIGINT (Ctrl-C).
func TestOneDotZeroConfigIntoRealPrometheus(t *testing.T) {
	t.Parallel()
	requireDebianPrometheus(t)
	p := startPipeline(t)
	client := newHTTPClient(t)

	all := []*process{p.node, p.poller, p.receiver, p.prom.process}
	for _, c := range []struct{ what, query string }{
		{
			"a node exporter series labelled job/instance/publisher",
			`node_boot_time_seconds{job="node",instance="node1",publisher="DC1"}`,
		},
		{
			"the scrape duration the receiver adds",
			`scrape_duration_seconds{job="node",instance="node1",publisher="DC1"}`,
		},
		{
			"the poller's own metrics as job prometheus_streams",
			`prometheus_streams_poller_scrapes_total{job="prometheus_streams",instance="DC1",publisher="DC1"}`,
		},
		// The poller's per-target labels clash with the grouping key and
		// arrive renamed, as Prometheus renames them without honor_labels.
		{
			"the poller's count of successful node scrapes",
			`prometheus_streams_poller_scrapes_total{job="prometheus_streams",instance="DC1",exported_job="node",exported_instance="node1",outcome="success"} > 0`,
		},
	} {
		waitUntil(t, c.what+" in Prometheus", func() error { return promHas(client, p.prom.base, c.query) }, all...)
	}
	const up = `up{job="node",instance="node1",publisher="DC1"}`
	waitUntil(t, "the node target up in Prometheus", func() error { return promValue(client, p.prom.base, up, 1) }, all...)

	// A dead target is visible centrally.
	p.node.signal(t, syscall.SIGTERM)
	p.node.wait(t, stopTimeout)
	waitUntil(t, "the stopped node target down in Prometheus", func() error { return promValue(client, p.prom.base, up, 0) },
		p.poller, p.receiver, p.prom.process)

	p.poller.signal(t, syscall.SIGTERM)
	p.receiver.signal(t, syscall.SIGINT)
	for _, d := range []*process{p.poller, p.receiver} {
		if code := d.wait(t, stopTimeout); code != 0 {
			t.Errorf("%s exited with %s after its signal, want status 0", d.name, d.cmd.ProcessState)
		}
	}
	if _, err := os.Stat(p.pidFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the poller's pid file %s is still there after it stopped (stat: %v)", p.pidFile, err)
	}
}

// TestCheckConfigOnOneDotZeroFile runs check-config on the 1.0 file, which
// passes and lists its targets, and on the same file with a misspelt key,
// which fails naming the key and its line.
func TestCheckConfigOnOneDotZeroFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := render(t, "prometheus-streams-1.0.yaml.tmpl", streamsConfig{
		LogFile:        filepath.Join(dir, "prometheus-streams.log"),
		MonitorPort:    10000,
		ClusterID:      "dc1_stream",
		NATSURLs:       "nats://nats1.dc1.example.net:4222,nats://nats2.dc1.example.net:4222",
		PushgatewayURL: "http://prometheus.dc2.example.net:9091",
		NodeURL:        "http://node1.dc1.example.net:9100/metrics",
	})
	typoLine := bytes.Count(good[:bytes.Index(good, []byte("\nscrape_interval:"))+1], []byte("\n")) + 1
	typo := bytes.Replace(good, []byte("\nscrape_interval:"), []byte("\nscrape_intervall:"), 1)

	for _, c := range []struct {
		name       string
		file       []byte
		wantCode   int
		wantStdout []string
		wantRows   [][3]string // JOB, INSTANCE, URL rows of the target table
		wantStderr []string
	}{
		{
			name:       "1.0 file",
			file:       good,
			wantCode:   0,
			wantStdout: []string{"valid for [poller receiver]", "identity DC1"},
			wantRows: [][3]string{
				{"node", "node1", "http://node1.dc1.example.net:9100/metrics"},
				{"prometheus_streams", "DC1", "http://localhost:10000/metrics"},
			},
		},
		{
			name:       "misspelt key",
			file:       typo,
			wantCode:   1,
			wantStderr: []string{"scrape_intervall"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "prometheus-streams.yaml", c.file)
			// The line is part of the file name prefix: "<file>:<line>:".
			if c.wantCode != 0 {
				c.wantStderr = append(c.wantStderr, fmt.Sprintf("%s:%d:", path, typoLine))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "check-config", "--config", path)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := cmd.ProcessState.ExitCode()
			if code != c.wantCode {
				t.Fatalf("exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", code, err, c.wantCode, &stdout, &stderr)
			}
			for _, want := range c.wantStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
				}
			}
			for _, want := range c.wantRows {
				if !hasRow(stdout.String(), want) {
					t.Errorf("stdout lacks the target row %q:\n%s", want, &stdout)
				}
			}
			for _, want := range c.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, &stderr)
				}
			}
		})
	}
}

// hasRow reports whether out has a line of exactly the fields of row.
func hasRow(out string, row [3]string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && [3]string(f) == row {
			return true
		}
	}
	return false
}
