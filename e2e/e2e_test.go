package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
)

// Debian's packages; the test runs the binaries they install.
const (
	prometheusBin   = "/usr/bin/prometheus"
	nodeExporterBin = "/usr/bin/prometheus-node-exporter"
)

// stopTimeout bounds how long poller and receiver may take to exit after
// SIGTERM.
const stopTimeout = 15 * time.Second

// requireDebianPrometheus skips the test when Debian's prometheus or
// prometheus-node-exporter is missing, and fails it instead under CI, where
// a skip would hide that the end-to-end test never ran.
func requireDebianPrometheus(t *testing.T) {
	t.Helper()
	for _, bin := range []string{prometheusBin, nodeExporterBin} {
		if _, err := os.Stat(bin); err != nil {
			const msg = "install Debian's prometheus and prometheus-node-exporter: apt-get install -y prometheus prometheus-node-exporter"
			if os.Getenv("CI") != "" {
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
// exit 0 on SIGTERM.
func TestOneDotZeroConfigIntoRealPrometheus(t *testing.T) {
	requireDebianPrometheus(t)
	dir := t.TempDir()
	client := newHTTPClient(t)

	nats, err := embedded.StartStreaming(embedded.StreamingOptions{})
	if err != nil {
		t.Fatalf("StartStreaming: %v", err)
	}
	t.Cleanup(nats.Shutdown)
	pgw, err := embedded.StartPushgateway(embedded.PushgatewayOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("StartPushgateway: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := pgw.Close(ctx); err != nil {
			t.Errorf("pushgateway Close: %v", err)
		}
	})

	nodeURL := "http://" + hostPort(freePort(t)) + "/metrics"
	node := startNodeExporter(t, dir, nodeURL)
	waitUntil(t, "the node exporter to serve node_boot_time_seconds", func() error {
		b, err := get(client, nodeURL)
		if err == nil && !bytes.Contains(b, []byte("\nnode_boot_time_seconds ")) {
			err = fmt.Errorf("%s has no node_boot_time_seconds", nodeURL)
		}
		return err
	}, node)

	// 1.0 let poller and receiver share one file; each gets its own copy
	// here only because each needs its own monitor_port and log file. The
	// second URL in the list is a server that is down, as one of a DC's
	// NATS servers may be.
	natsURLs := nats.URL() + ",nats://" + hostPort(freePort(t))
	daemons := map[string]*process{}
	monitors := map[string]string{}
	for _, role := range []string{"poller", "receiver"} {
		monPort := freePort(t)
		logFile := filepath.Join(dir, role+".log")
		cfg := writeFile(t, dir, role+".yaml", render(t, "prometheus-streams-1.0.yaml.tmpl", streamsConfig{
			LogFile:        logFile,
			MonitorPort:    monPort,
			ClusterID:      nats.ClusterID(),
			NATSURLs:       natsURLs,
			PushgatewayURL: pgw.URL(),
			NodeURL:        nodeURL,
		}))
		// The poller runs with 1.0's flag order (--config and --pid
		// before the subcommand), the receiver with the subcommand first.
		args := []string{"receiver", "--config", cfg}
		if role == "poller" {
			args = []string{"--config", cfg, "--pid", filepath.Join(dir, "poller.pid"), "poller"}
		}
		daemons[role] = startProcess(t, dir, role, []string{logFile}, binary, args...)
		monitors[role] = "http://" + hostPort(monPort)
	}
	poller, receiver := daemons["poller"], daemons["receiver"]
	for role, base := range monitors {
		waitUntil(t, role+" /readyz (connected to NATS Streaming)", func() error {
			_, err := get(client, base+"/readyz")
			return err
		}, poller, receiver)
	}
	pidFile := filepath.Join(dir, "poller.pid")
	waitUntil(t, "the poller's --pid file", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		if got, want := strings.TrimSpace(string(b)), strconv.Itoa(poller.cmd.Process.Pid); got != want {
			return fmt.Errorf("%s holds %q, want %q", pidFile, got, want)
		}
		return nil
	}, poller)

	prom := startPrometheus(t, dir, pgw.URL())
	watch := []*process{node, poller, receiver, prom}
	for _, c := range []struct{ what, query string }{
		{"a node exporter series labelled job/instance/publisher",
			`node_boot_time_seconds{job="node",instance="node1",publisher="DC1"}`},
		{"the scrape duration the receiver adds",
			`scrape_duration_seconds{job="node",instance="node1",publisher="DC1"}`},
		{"the poller's own metrics as job prometheus_streams",
			`prometheus_streams_poller_scrapes_total{job="prometheus_streams",instance="DC1",publisher="DC1"}`},
		// The poller's per-target labels clash with the grouping key and
		// arrive renamed, as Prometheus renames them without honor_labels.
		{"the poller's count of successful node scrapes",
			`prometheus_streams_poller_scrapes_total{job="prometheus_streams",instance="DC1",exported_job="node",exported_instance="node1",outcome="success"} > 0`},
	} {
		waitUntil(t, c.what+" in Prometheus", func() error { return promHas(client, prom.base, c.query) }, watch...)
	}
	up := `up{job="node",instance="node1",publisher="DC1"}`
	waitUntil(t, "the node target up in Prometheus", func() error { return promValue(client, prom.base, up, 1) }, watch...)

	// A dead target is visible centrally.
	node.signal(t, syscall.SIGTERM)
	node.wait(t, stopTimeout)
	waitUntil(t, "the stopped node target down in Prometheus", func() error { return promValue(client, prom.base, up, 0) },
		poller, receiver, prom)

	poller.signal(t, syscall.SIGTERM)
	receiver.signal(t, syscall.SIGTERM)
	for _, p := range []*process{poller, receiver} {
		if code := p.wait(t, stopTimeout); code != 0 {
			t.Errorf("%s exited with %s after SIGTERM, want status 0", p.name, p.cmd.ProcessState)
		}
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("the poller's pid file %s is still there after it stopped (stat: %v)", pidFile, err)
	}
}

// startNodeExporter runs Debian's node exporter serving url. Only
// collectors that need no privileges and answer quickly on any Linux are
// on, so the scrape is the same on every host; stat has
// node_boot_time_seconds.
func startNodeExporter(t *testing.T, dir, nodeURL string) *process {
	t.Helper()
	u, err := url.Parse(nodeURL)
	if err != nil {
		t.Fatal(err)
	}
	return startProcess(t, dir, "node-exporter", nil, nodeExporterBin,
		"--web.listen-address="+u.Host,
		"--collector.disable-defaults",
		"--collector.stat", "--collector.time", "--collector.loadavg",
		"--collector.meminfo", "--collector.cpu", "--collector.uname",
	)
}

// prometheus is a running Prometheus and the base URL of its HTTP API.
type prometheus struct {
	*process
	base string
}

// startPrometheus runs Debian's Prometheus scraping the Pushgateway at
// pgwURL every second with honor_labels, and waits until it is ready.
func startPrometheus(t *testing.T, dir, pgwURL string) *prometheus {
	t.Helper()
	u, err := url.Parse(pgwURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, dir, "prometheus.yml", render(t, "prometheus.yml.tmpl", promConfig{PushgatewayHost: u.Host}))
	listen := hostPort(freePort(t))
	p := &prometheus{
		process: startProcess(t, dir, "prometheus", nil, prometheusBin,
			"--config.file="+cfg,
			"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
			"--web.listen-address="+listen,
		),
		base: "http://" + listen,
	}
	client := newHTTPClient(t)
	waitUntil(t, "Prometheus /-/ready", func() error {
		_, err := get(client, p.base+"/-/ready")
		return err
	}, p.process)
	return p
}

// TestCheckConfigOnOneDotZeroFile runs check-config on the 1.0 file, which
// passes and lists its targets, and on the same file with a misspelt key,
// which fails naming the key and its line.
func TestCheckConfigOnOneDotZeroFile(t *testing.T) {
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
		wantStderr []string
	}{
		{
			name:     "1.0 file",
			file:     good,
			wantCode: 0,
			wantStdout: []string{
				"valid for [poller receiver]",
				"http://node1.dc1.example.net:9100/metrics",
				"http://localhost:10000/metrics",
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
				if !targetListed(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
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

// targetListed reports whether out has want; a URL must be on a target
// row, so a URL listed only in passing does not count.
func targetListed(out, want string) bool {
	if !strings.HasPrefix(want, "http") {
		return strings.Contains(out, want)
	}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == want {
			return true
		}
	}
	return false
}
