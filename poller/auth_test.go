package poller

import (
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// tlsExporter serves body over HTTPS to requests that authorized accepts,
// and 401 to the others.
func tlsExporter(t *testing.T, body []byte, authorized func(*http.Request) bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="exporter"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// caPEM is the PEM of srv's certificate, to trust it through tls_config.ca.
func caPEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// configClient builds a client from HTTP client settings, as cmd does for
// every job, closed when the test ends.
func configClient(t *testing.T, hc commoncfg.HTTPClientConfig) *http.Client {
	t.Helper()
	if err := hc.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := commoncfg.NewClientFromConfig(hc, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// Parallel, with TestStreamUnreachableAtStart alone: both mostly wait for
// a first scrape at its offset in a one-second interval. The package's
// other tests stay one at a time: their 20-100ms scrape timeouts ran out
// when they ran side by side.
func TestScrapeWithTLSAndCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	sample := testenv.Sample(t, "node_exporter.prom")
	basic := tlsExporter(t, sample, func(r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		return ok && u == "poller" && p == "s3cret"
	})
	bearer := tlsExporter(t, sample, func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer t0ken"
	})
	withCA := func(srv *httptest.Server, hc commoncfg.HTTPClientConfig) commoncfg.HTTPClientConfig {
		hc.FollowRedirects, hc.EnableHTTP2 = true, true
		hc.TLSConfig = commoncfg.TLSConfig{CA: caPEM(srv)}
		return hc
	}
	tests := []struct {
		name       string // job and instance
		srv        *httptest.Server
		hc         commoncfg.HTTPClientConfig
		wantStatus string // "" for a successful scrape
	}{
		{"basic", basic, commoncfg.HTTPClientConfig{BasicAuth: &commoncfg.BasicAuth{Username: "poller", Password: "s3cret"}}, ""},
		{"basic-wrong", basic, commoncfg.HTTPClientConfig{BasicAuth: &commoncfg.BasicAuth{Username: "poller", Password: "wrong"}}, "401"},
		{"bearer", bearer, commoncfg.HTTPClientConfig{Authorization: &commoncfg.Authorization{Credentials: "t0ken"}}, ""},
		{"bearer-wrong", bearer, commoncfg.HTTPClientConfig{Authorization: &commoncfg.Authorization{Credentials: "stale"}}, "401"},
		{"no-credentials", bearer, commoncfg.HTTPClientConfig{}, "401"},
	}
	var targets []config.Target
	clients := map[string]*http.Client{}
	for _, tt := range tests {
		targets = append(targets, config.Target{Job: tt.name, Name: tt.name, URL: tt.srv.URL + "/metrics"})
		clients[tt.name] = configClient(t, withCA(tt.srv, tt.hc))
	}
	p, _ := newPoller(t, h.pub, Options{Targets: targets, HTTPClients: clients, Timeout: time.Second, Interval: time.Second})
	testenv.Run(t, p.Run)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testenv.WaitFor(t, "a message for "+tt.name, 10*time.Second, func() bool { return h.latest(tt.name) != nil })
			env := h.latest(tt.name)
			if tt.wantStatus == "" {
				if env.Outcome != envelope.OutcomeSuccess {
					t.Fatalf("outcome %v: %s", env.Outcome, env.Error)
				}
				body, err := env.Body(nil, 1<<20)
				if err != nil || !bytes.Equal(body, sample) {
					t.Fatalf("body: err %v, %d bytes, want the %d bytes served", err, len(body), len(sample))
				}
				return
			}
			if env.Outcome != envelope.OutcomeFailure || !strings.Contains(env.Error, tt.wantStatus) {
				t.Fatalf("outcome %v error %q, want a failure naming HTTP status %s", env.Outcome, env.Error, tt.wantStatus)
			}
			if n := testutil.ToFloat64(p.metrics.scrapeFailures.WithLabelValues(tt.name, tt.name, reasonHTTPStatus)); n < 1 {
				t.Fatalf("scrape_failures_total{reason=%q} = %v", reasonHTTPStatus, n)
			}
		})
	}
}

func TestConfigClientKeepsCompressedTransfer(t *testing.T) {
	// prometheus/common's transport does not ask for gzip; the poller does,
	// and inflates the body itself.
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	sample := testenv.Sample(t, "node_exporter.prom")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(sample)
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", testenv.TextContentType)
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, _ = w.Write(sample)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(zipped.Bytes())
	}))
	defer srv.Close()
	if zipped.Len() >= len(sample)/2 {
		t.Fatalf("the sample compresses to %d of %d bytes; the limit case below needs it to halve", zipped.Len(), len(sample))
	}
	client := configClient(t, commoncfg.DefaultHTTPClientConfig)
	p, _ := newPoller(t, h.pub, Options{
		Targets:     []config.Target{{Job: "node", Name: "zipped", URL: srv.URL}},
		HTTPClients: map[string]*http.Client{"node": client},
	})
	// body_size_limit applies to the inflated body, so a small compressed
	// body cannot unpack into an unbounded one.
	limited, _ := newPoller(t, h.pub, Options{
		Identity:    "dc2",
		Targets:     []config.Target{{Job: "node", Name: "limited", URL: srv.URL}},
		HTTPClients: map[string]*http.Client{"node": client},
		BodyLimit:   int64(len(sample) / 2),
	})
	testenv.Run(t, p.Run)
	testenv.Run(t, limited.Run)
	testenv.WaitFor(t, "both scrapes", 5*time.Second, func() bool { return h.latest("zipped") != nil && h.latest("limited") != nil })
	env := h.latest("zipped")
	body, err := env.Body(nil, 1<<20)
	if env.Outcome != envelope.OutcomeSuccess || err != nil || !bytes.Equal(body, sample) {
		t.Fatalf("outcome %v (%s), body err %v, %d bytes, want the %d bytes inflated", env.Outcome, env.Error, err, len(body), len(sample))
	}
	if env := h.latest("limited"); env.Outcome != envelope.OutcomeFailure || !strings.Contains(env.Error, "body_size_limit") {
		t.Fatalf("limited: outcome %v error %q, want body_size_limit exceeded", env.Outcome, env.Error)
	}
}
