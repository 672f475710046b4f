package e2e

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// pipeline is everything TestOneDotZeroConfigIntoRealPrometheus runs: the
// child processes (the in-process servers are only reached through them).
type pipeline struct {
	node, poller, receiver *process
	prom                   *prometheus
	pidFile                string // the poller's --pid file
}

// startPipeline starts NATS Streaming and the Pushgateway in-process, then
// the node exporter, the poller and the receiver on a 1.0 file, then
// Prometheus, waiting for each to be ready. Everything stops when the
// test ends.
func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	dir := t.TempDir()
	logger := fileLogger(t, dir, "servers.log")
	nats := testenv.Streaming(t, embedded.StreamingOptions{Logger: logger})
	pgw := testenv.Pushgateway(t, embedded.PushgatewayOptions{Listen: "127.0.0.1:0", Logger: logger})

	// Every port a child process is given on its command line or in a file.
	ports := testenv.FreePorts(t, 5)
	p := &pipeline{pidFile: filepath.Join(dir, "poller.pid")}
	nodeURL := "http://" + hostPort(ports[0]) + "/metrics"
	p.node = startNodeExporter(t, dir, nodeURL)
	cfg := streamsConfig{
		ClusterID: nats.ClusterID(),
		// The second server is down, as one of a DC's NATS servers may be.
		NATSURLs:       nats.URL() + ",nats://" + hostPort(ports[1]),
		PushgatewayURL: pgw.URL(),
		NodeURL:        nodeURL,
	}
	p.poller, p.receiver = startDaemons(t, dir, cfg, ports[2], ports[3], p.pidFile)
	p.prom = startPrometheus(t, dir, hostPort(ports[4]), pgw.URL())
	return p
}

// startNodeExporter runs Debian's node exporter serving nodeURL and waits
// until it serves node_boot_time_seconds. Only collectors that need no
// privileges and answer quickly on any Linux are on, so the scrape is the
// same on every host; stat has node_boot_time_seconds.
func startNodeExporter(t *testing.T, dir, nodeURL string) *process {
	t.Helper()
	u, err := url.Parse(nodeURL)
	if err != nil {
		t.Fatal(err)
	}
	node := startProcess(t, dir, "node-exporter", nil, nodeExporterBin,
		"--web.listen-address="+u.Host,
		"--collector.disable-defaults",
		"--collector.stat", "--collector.time", "--collector.loadavg",
		"--collector.meminfo", "--collector.cpu", "--collector.uname",
	)
	client := newHTTPClient(t)
	waitUntil(t, "the node exporter to serve node_boot_time_seconds", func() error {
		b, err := get(client, nodeURL)
		if err == nil && !bytes.Contains(b, []byte("\nnode_boot_time_seconds ")) {
			err = fmt.Errorf("%s has no node_boot_time_seconds", nodeURL)
		}
		return err
	}, node)
	return node
}

// startDaemons runs the poller and the receiver of the built binary, each
// on the 1.0 file filled from cfg, and waits until both are connected to
// NATS Streaming and the poller has written pidFile. 1.0 let poller and
// receiver share one file; each gets its own copy here only because each
// needs its own monitor_port and log file.
func startDaemons(t *testing.T, dir string, cfg streamsConfig, pollerMon, receiverMon int, pidFile string) (poller, receiver *process) {
	t.Helper()
	start := func(role string, mon int, args func(file string) []string) *process {
		cfg.MonitorPort = mon
		cfg.LogFile = filepath.Join(dir, role+".log")
		file := writeFile(t, dir, role+".yaml", render(t, "prometheus-streams-1.0.yaml.tmpl", cfg))
		return startProcess(t, dir, role, []string{cfg.LogFile}, binary, args(file)...)
	}
	// The poller runs with 1.0's flag order (--config and --pid before the
	// subcommand), the receiver with the subcommand first.
	poller = start("poller", pollerMon, func(f string) []string { return []string{"--config", f, "--pid", pidFile, "poller"} })
	receiver = start("receiver", receiverMon, func(f string) []string { return []string{"receiver", "--config", f} })

	waitConnected(t, map[string]int{"poller": pollerMon, "receiver": receiverMon}, poller, receiver)
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
	return poller, receiver
}

// prometheus is a running Prometheus and the base URL of its HTTP API.
type prometheus struct {
	*process
	base string
}

// startPrometheus runs Debian's Prometheus with the configuration of
// testdata/prometheus.yml.tmpl, which scrapes the Pushgateway at pgwURL
// every second with honor_labels, and waits until it is ready.
func startPrometheus(t *testing.T, dir, listen, pgwURL string) *prometheus {
	t.Helper()
	u, err := url.Parse(pgwURL)
	if err != nil {
		t.Fatal(err)
	}
	return runPrometheus(t, dir, listen, render(t, "prometheus.yml.tmpl", promConfig{PushgatewayHost: u.Host}))
}

// runPrometheus runs Debian's Prometheus on listen with the configuration
// file cfg, its data in dir, and waits until it is ready.
func runPrometheus(t *testing.T, dir, listen string, cfg []byte) *prometheus {
	t.Helper()
	file := writeFile(t, dir, "prometheus.yml", cfg)
	p := &prometheus{
		process: startProcess(t, dir, "prometheus", nil, prometheusBin,
			"--config.file="+file,
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

// waitConnected waits until the daemons on the monitor ports (role ->
// port) answer /readyz: connected to NATS Streaming. procs are watched for
// an early exit.
func waitConnected(t *testing.T, ports map[string]int, procs ...*process) {
	t.Helper()
	client := newHTTPClient(t)
	for role, port := range ports {
		waitUntil(t, role+" /readyz (connected to NATS Streaming)", func() error {
			_, err := get(client, "http://"+hostPort(port)+"/readyz")
			return err
		}, procs...)
	}
}
