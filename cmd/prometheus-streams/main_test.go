package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut testenv.SyncBuffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prometheus-streams.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandLine(t *testing.T) {
	v1 := "../../config/testdata/v1.yaml"
	typo := writeFile(t, "scrape_interval: 60s\nscrape_intervall: 30s\npoller_stream:\n  cluster_id: c\n  urls: nats://x:4222\n  topic: t\n")
	receiverOnly := writeFile(t, "receiver_stream:\n  cluster_id: c\n  urls: nats://x:4222\n  topic: t\npush_gateway:\n  url: http://pgw:9091\n")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // regexp on stdout
		wantErr  string // regexp on stderr
	}{
		{"version", []string{"version"}, 0, `prometheus-streams, version`, ``},
		{"1.0 --version flag", []string{"--version"}, 0, `version`, ``},
		{
			"check-config on a 1.0 file, 1.0 flag order",
			[]string{"--config", v1, "check-config"},
			0,
			`(?s)warning: .*management.*valid for \[poller receiver\].*choria\s+choria1\s+http://choria1.dc1.example.net:8222/choria/prometheus.*choria2.dc1.example.net:8222.*prometheus_streams\s+USDC1\s+http://localhost:10000/metrics`, ``,
		},
		{"check-config names the unknown key and its line", []string{"check-config", "--config", typo}, 1, ``, `:2:.*scrape_intervall`},
		{"check-config on a missing file", []string{"check-config", "--config", "/nonexistent.yaml"}, 1, ``, `nonexistent.yaml`},
		{"check-config for a role the file lacks", []string{"check-config", "--config", receiverOnly, "--role", "poller"}, 1, ``, `poller_stream`},
		{"poller with a receiver-only file", []string{"poller", "--config", receiverOnly}, 1, ``, `poller_stream`},
		{"a bad log format", []string{"--config", v1, "--log-format", "xml", "poller"}, 1, ``, `log-format`},
		{"enroll points to its replacement", []string{"enroll", "prom.example.net", "--dir", "/tmp"}, 1, ``, `enroll was removed.*tls`},
		{"an unknown command", []string{"frobnicate"}, 1, ``, `unknown command`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.wantCode, out, errOut)
			}
			if !regexp.MustCompile(c.wantOut).MatchString(out) {
				t.Errorf("stdout does not match %q:\n%s", c.wantOut, out)
			}
			if !regexp.MustCompile(c.wantErr).MatchString(errOut) {
				t.Errorf("stderr does not match %q:\n%s", c.wantErr, errOut)
			}
		})
	}
}

func TestDemoRunsThePipelineAndStopsCleanly(t *testing.T) {
	t.Run("jetstream", func(t *testing.T) { testDemo(t, "JetStream") })
	t.Run("stan", func(t *testing.T) { testDemo(t, "NATS Streaming", "--stan") })
}

// testDemo runs the demo with flags and checks its banner names transport.
func testDemo(t *testing.T, transport string, flags ...string) {
	exporter := testenv.Exporter(t, testenv.Sample(t, "node_exporter.prom"), testenv.TextContentType)
	var out, errOut testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{
			"demo", "--pushgateway-listen", "127.0.0.1:0", "--scrape-interval", "100ms",
			"--target", exporter.URL + "/metrics",
		}, flags...), &out, &errOut)
	}()
	var gateway string
	testenv.WaitFor(t, "the demo to print the Pushgateway's address", 10*time.Second, func() bool {
		m := regexp.MustCompile(`Pushgateway\s+(http://\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			gateway = m[1]
		}
		return m != nil
	})
	if !strings.Contains(out.String(), transport) {
		t.Errorf("the demo's banner does not name %s:\n%s", transport, out.String())
	}
	instance := strings.TrimPrefix(exporter.URL, "http://")
	for _, want := range []map[string]string{
		{"job": "demo", "instance": instance, "publisher": "demo"},
		{"job": "prometheus_streams", "instance": "demo", "publisher": "demo"},
	} {
		testenv.WaitFor(t, fmt.Sprintf("up%v = 1 in the demo's Pushgateway", want), 15*time.Second, func() bool {
			fams, err := testenv.Families(gateway + "/metrics")
			if err != nil {
				return false
			}
			v, ok := testenv.Value(fams, "up", want)
			return ok && v == 1
		})
	}
	// The same targets are served for Prometheus: /sd lists them, and the
	// demo target's scrape answers the exporter's body.
	sd := regexp.MustCompile(`served targets\s+(http://\S+)`).FindStringSubmatch(out.String())
	if sd == nil {
		t.Fatalf("the demo does not print its /sd:\n%s", out.String())
	}
	var groups []targetgroup.Group
	testenv.WaitFor(t, "/sd to list the demo target and the poller itself", 10*time.Second, func() bool {
		resp, err := http.Get(sd[1])
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		return json.NewDecoder(resp.Body).Decode(&groups) == nil && len(groups) == 2
	})
	served := 0
	for _, g := range groups {
		if g.Labels["job"] != "demo" {
			continue
		}
		served++
		q := url.Values{"job": {"demo"}, "instance": {string(g.Labels["__param_instance"])}, "publisher": {"demo"}}
		// Polled: at a 100ms interval max_age is 200ms, and a race-built
		// run can let the newest scrape held get that old (503 "stale").
		var body []byte
		testenv.WaitFor(t, "the served demo target to answer the exporter's body", 10*time.Second, func() bool {
			resp, err := http.Get("http://" + string(g.Targets[0][model.AddressLabel]) + string(g.Labels[model.MetricsPathLabel]) + "?" + q.Encode())
			if err != nil {
				return false
			}
			body, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK && bytes.Equal(body, testenv.Sample(t, "node_exporter.prom"))
		})
	}
	if served != 1 {
		b, _ := json.Marshal(groups) // a Group prints as its Source, empty here
		t.Errorf("/sd lists %d demo targets, want 1: %s", served, b)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d after cancel\nstderr: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s of its context ending")
	}
}

func TestDaemonsRunFromAFileAndStop(t *testing.T) {
	nats := testenv.Streaming(t, embedded.StreamingOptions{})
	gw := testenv.Pushgateway(t, embedded.PushgatewayOptions{})
	exporter := testenv.Exporter(t, []byte("answer 42\n"), testenv.TextContentType)
	pid := filepath.Join(t.TempDir(), "poller.pid")
	file := writeFile(t, fmt.Sprintf(`identity: dc9
scrape_interval: 200ms
poller_stream: {cluster_id: %[1]s, urls: "%[2]s", topic: prometheus}
receiver_stream: {cluster_id: %[1]s, urls: "%[2]s", topic: prometheus}
push_gateway: {url: "%[3]s", publisher_label: true}
jobs:
  app:
    targets:
      - name: app1
        url: %[4]s/metrics
`, nats.ClusterID(), nats.URL(), gw.URL(), exporter.URL))

	ctx, cancel := context.WithCancel(context.Background())
	codes := make(chan int, 2)
	var errOut testenv.SyncBuffer
	go func() {
		codes <- run(ctx, []string{"--config", file, "--pid", pid, "poller"}, &testenv.SyncBuffer{}, &errOut)
	}()
	go func() {
		codes <- run(ctx, []string{"receiver", "--config", file, "--log-format", "json"}, &testenv.SyncBuffer{}, &errOut)
	}()
	testenv.WaitFor(t, "answer{job=app,instance=app1,publisher=dc9} in the Pushgateway", 15*time.Second, func() bool {
		fams, err := testenv.Families(gw.URL() + "/metrics")
		if err != nil {
			return false
		}
		v, ok := testenv.Value(fams, "answer", map[string]string{"job": "app", "instance": "app1", "publisher": "dc9"})
		return ok && v == 42
	})
	if b, err := os.ReadFile(pid); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("pid file: %q, %v", b, err)
	}
	if !strings.Contains(errOut.String(), `"msg":"stream connected"`) {
		t.Errorf("the receiver did not log JSON: %s", errOut.String())
	}
	cancel()
	for range 2 {
		select {
		case code := <-codes:
			if code != 0 {
				t.Fatalf("a daemon exited %d\n%s", code, errOut.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a daemon did not stop within 15s")
		}
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

func TestCheckConfigHidesPasswordsInURLs(t *testing.T) {
	file := writeFile(t, "poller_stream: {cluster_id: c, urls: nats://x:4222, topic: t}\n"+
		"jobs:\n  app:\n    targets:\n      - name: a\n        url: http://user:s3cret@app:9100/metrics\n")
	code, out, errOut := runCmd(t, "check-config", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "http://user:xxxxx@app:9100/metrics") {
		t.Fatalf("check-config printed %q", out)
	}
}

// TestREADMEExampleIsValid keeps the README's minimal file true.
func TestREADMEExampleIsValid(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)A minimal file[^\n]*\n\n```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("the README's minimal file example is gone")
	}
	code, out, errOut := runCmd(t, "check-config", "--config", writeFile(t, string(m[1])))
	if code != 0 || !strings.Contains(out, "valid for [poller receiver]") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// TestCheckConfigPrintsTheJetStreamTransport checks that check-config
// names the stream, the subjects, what the poller creates and the
// receiver's consumers of a JetStream file, and the channel of a 1.0 one.
func TestCheckConfigPrintsTheJetStreamTransport(t *testing.T) {
	file := writeFile(t, "max_age: 2m\nmonitor_port: 10000\nserve_targets: true\n"+
		"poller_stream: {urls: 'nats://a:4222', stream: PROMETHEUS, domain: central}\n"+
		"receiver_stream: {urls: 'nats://b:4222', stream: PROMETHEUS, consumer: central-receivers, pinned_ttl: 3s}\n"+
		"push_gateway: {url: 'http://pgw:9091'}\njobs:\n  node:\n    targets: [{url: 'http://n:9100/metrics'}]\n")
	code, out, errOut := runCmd(t, "check-config", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"poller: JetStream stream PROMETHEUS (domain central), subjects prometheus.<publisher>.<job>.<instance>",
		"poller: creates the stream when missing: max_msgs_per_subject 1, max_age 2m, storage file, replicas 1, max_bytes unlimited",
		"receiver: push_gateway consumes the durable consumer central-receivers shared by every receiver of this configuration (pinned, pinned_ttl 3s",
		"receiver: serve_targets follows the stream with an ordered consumer of its own",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config does not print %q:\n%s", want, out)
		}
	}
	v1 := writeFile(t, "poller_stream: {cluster_id: c, urls: nats://x:4222, topic: t}\njobs:\n  n: {targets: [{url: 'http://n:9100/metrics'}]}\n")
	if _, out, _ := runCmd(t, "check-config", "--config", v1); !strings.Contains(out, "poller: NATS Streaming cluster c, channel t") {
		t.Errorf("check-config of a 1.0 file does not name its channel:\n%s", out)
	}
}

func TestCheckConfigListsFileSDTargets(t *testing.T) {
	file := writeFile(t, "poller_stream: {cluster_id: c, urls: nats://x:4222, topic: t}\n"+
		"jobs:\n  node:\n    targets: [{name: static1, url: 'http://s:9100/metrics'}]\n    file_sd_configs: [{files: [targets/*.yml]}]\n")
	dir := filepath.Join(filepath.Dir(file), "targets")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sd := "- targets: ['a:9100', 'b:9100']\n  labels: {__scheme__: https}\n- targets: ['c:9100']\n  labels: {instance: static1}\n"
	if err := os.WriteFile(filepath.Join(dir, "dc1.yml"), []byte(sd), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "check-config", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"static1   http://s:9100/metrics",
		"a:9100    https://a:9100/metrics",
		"b:9100    https://b:9100/metrics",
		"file_sd: job node: 2 targets from 1 file_sd_configs entries",
		`file_sd: refused (duplicate): job "node": file ` + filepath.Join(dir, "dc1.yml") + `: target "c:9100" (instance "static1")`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckConfigPrintsReceiverOutputs(t *testing.T) {
	const stream = "identity: r1\nreceiver_stream: {cluster_id: c, urls: nats://x:4222, topic: t}\n"
	tests := []struct {
		name     string
		input    string
		wantCode int
		want     []string // lines of stdout
		wantErr  string   // regexp on stderr
	}{
		{
			name:  "push only",
			input: stream + "push_gateway: {url: 'http://u:s3cret@pgw:9091'}\n",
			want: []string{
				"receiver: client_id (durable) prometheus_streams_receiver_r1, max_age 2m",
				"receiver: push_gateway http://u:xxxxx@pgw:9091, publisher_label false",
				"receiver: serve_targets false",
			},
		},
		{
			name:  "serve only, defaults",
			input: stream + "monitor_port: 9100\nserve_targets: true\n",
			want: []string{
				"receiver: push_gateway none",
				"receiver: serve_targets true, /sd on the monitor endpoint :9100, address (the Host of each /sd request), publisher_label true (publisher), " +
					"delete_after 1h, max_groups 100000, max_bytes 1GiB, max_concurrent_scrapes 64, write_timeout 10s",
			},
		},
		{
			name: "push and serve, set",
			input: stream + "monitor_port: 9100\nmonitor_listen: 10.0.0.1\npush_gateway: {url: 'http://pgw:9091', publisher_label: true}\nserve_targets: true\n" +
				"serve: {address: 'lb.example.net:443', publisher_label: false, delete_after: 2h, max_groups: 10, max_bytes: 64MiB, max_concurrent_scrapes: 2, write_timeout: 1m}\n",
			want: []string{
				"receiver: push_gateway http://pgw:9091, publisher_label true",
				"receiver: serve_targets true, /sd on the monitor endpoint 10.0.0.1:9100, address lb.example.net:443, publisher_label false, " +
					"delete_after 2h, max_groups 10, max_bytes 64MiB, max_concurrent_scrapes 2, write_timeout 1m",
			},
		},
		{name: "serve without monitor_port", input: stream + "serve_targets: true\n", wantCode: 1, wantErr: `:3: serve_targets: requires monitor_port`},
		{name: "serve section without serve_targets", input: stream + "push_gateway: {url: 'http://pgw'}\nserve: {}\n", wantCode: 1, wantErr: `:4: serve: set serve_targets: true`},
		{name: "neither output", input: stream, wantCode: 1, wantErr: `push_gateway: required for the receiver, or serve_targets: true`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, "check-config", "--config", writeFile(t, tt.input))
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			lines := strings.Split(out, "\n")
			for _, want := range tt.want {
				if !slices.Contains(lines, want) {
					t.Errorf("check-config output lacks the line %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("check-config printed a password:\n%s", out)
			}
			if !regexp.MustCompile(tt.wantErr).MatchString(errOut) {
				t.Errorf("stderr does not match %q:\n%s", tt.wantErr, errOut)
			}
		})
	}
}
