package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"golang.org/x/crypto/bcrypt"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/monitor"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output/serve"
)

func TestSelfScrapeThroughMonitorWebConfig(t *testing.T) {
	// monitor_web_config serves TLS with basic auth: the self-scrape target
	// switches to https and the prometheus_streams job's settings get in.
	dir := t.TempDir()
	// A certificate for 127.0.0.1 and its key, monitor.crt and monitor.key.
	testenv.SelfSigned(t, testenv.CertOptions{CommonName: "monitor", IPAddresses: testenv.Loopback(), Server: true}).
		Write(t, dir, "monitor.crt", "monitor.key")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := "tls_server_config:\n  cert_file: monitor.crt\n  key_file: monitor.key\nbasic_auth_users:\n  self: " + string(hash) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "web.yml"), []byte(web), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	file := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`identity: me
monitor_port: %s
monitor_listen: 127.0.0.1
monitor_web_config: web.yml
jobs:
  prometheus_streams:
    basic_auth: {username: self, password: s3cret}
    tls_config: {ca_file: monitor.crt}
`, port)
	if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := selfScrapeScheme(cfg, cfg.Targets())
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || !strings.HasPrefix(targets[0].URL, "https://127.0.0.1:") {
		t.Fatalf("targets %+v, want the self-scrape target over https", targets)
	}
	// The client the poller builds for the job (poller/targets.go).
	client, err := commoncfg.NewClientFromConfig(*targets[0].HTTPClient, "scrape_"+config.SelfScrapeJob)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()

	mon, err := monitor.New(cfg.MonitorAddress(), cfg.MonitorWebConfig, prometheus.NewRegistry(), func() bool { return true }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, mon.Run)

	get := func(c *http.Client) int {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, targets[0].URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(client); code != http.StatusOK {
		t.Fatalf("self-scrape with the job's settings: %d, want 200", code)
	}
	// The same CA without the credentials is refused.
	anon := *cfg.Targets()[0].HTTPClient
	anon.BasicAuth = nil
	noAuth, err := commoncfg.NewClientFromConfig(anon, "anon")
	if err != nil {
		t.Fatal(err)
	}
	defer noAuth.CloseIdleConnections()
	if code := get(noAuth); code != http.StatusUnauthorized {
		t.Fatalf("self-scrape without credentials: %d, want 401", code)
	}
}

func TestPushgatewayHTTPClientErrorsNameTheSection(t *testing.T) {
	pg := config.DefaultPushGatewayConfig
	pg.HTTPClientConfig.TLSConfig.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := pushgatewayHTTPClient(&pg); err == nil || !strings.Contains(err.Error(), "push_gateway") {
		t.Fatalf("a missing ca_file: %v, want an error naming push_gateway", err)
	}
}

// The served targets' __scheme__ follows the monitor endpoint's TLS, and
// serve.scheme overrides it for a load balancer in front.
func TestServeSchemeFollowsTheMonitorWebConfig(t *testing.T) {
	dir := t.TempDir()
	testenv.SelfSigned(t, testenv.CertOptions{CommonName: "monitor", IPAddresses: testenv.Loopback(), Server: true}).
		Write(t, dir, "monitor.crt", "monitor.key")
	if err := os.WriteFile(filepath.Join(dir, "web.yml"), []byte("tls_server_config:\n  cert_file: monitor.crt\n  key_file: monitor.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, extra, want string }{
		{"TLS on the monitor endpoint", "", "https"},
		{"serve.scheme behind a load balancer", "serve: {scheme: http}\n", "http"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, "config.yaml")
			text := "monitor_port: 10000\nmonitor_web_config: web.yml\nserve_targets: true\n" + c.extra
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			out, err := buildServeOutput(cfg, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			out.ReplayDone()
			out.Offer(&envelope.Envelope{Job: "node", Instance: "a", ScrapeStart: time.Now(), Outcome: envelope.OutcomeFailure}, discardDelivery{})
			rec := httptest.NewRecorder()
			out.SDHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, serve.SDPath, nil))
			if want := `"__scheme__":"` + c.want + `"`; !strings.Contains(rec.Body.String(), want) {
				t.Errorf("/sd has no %s: %s", want, rec.Body)
			}
		})
	}
}

type discardDelivery struct{}

func (discardDelivery) Done(string, error) {}
