package monitor

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "prometheus_streams_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	s, err := New("127.0.0.1:0", "", reg, ready.Load, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "prometheus_streams_test_total 3") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while not connected: %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz while connected: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	again, err := New(s.Addr(), "", reg, ready.Load, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the port was not released on shutdown: %v", err)
	}
	_ = again.listener.Close()
}

func TestListenErrorIsReported(t *testing.T) {
	s, err := New("127.0.0.1:0", "", prometheus.NewRegistry(), func() bool { return true }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.listener.Close() }()
	if _, err := New(s.Addr(), "", prometheus.NewRegistry(), func() bool { return true }, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("second listener on %s: %v, want a listen error", s.Addr(), err)
	}
}

// serve starts a monitor with webConfig and opts and stops it when the
// test ends.
func serve(t *testing.T, webConfig string, opts ...Option) *Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "prometheus_streams_test_total", Help: "test"}))
	s, err := New("127.0.0.1:0", webConfig, reg, func() bool { return true }, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// do sends a GET to url with client, with basic auth unless user is "".
func do(t *testing.T, client *http.Client, url, user, password string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, t.TempDir(), "web.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	if scheme, err := Scheme(webConfig); err != nil || scheme != "http" {
		t.Fatalf("Scheme = %q, %v; want http", scheme, err)
	}
	// An endpoint a daemon adds, such as the receiver's /sd.
	added := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("[]")) })
	s := serve(t, webConfig, WithPprof(true), WithHandler("GET /sd", added))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tests := []struct {
		name, path, user, password string
		want                       int
	}{
		{"no credentials", "/metrics", "", "", http.StatusUnauthorized},
		{"wrong password", "/metrics", "prometheus", "wrong", http.StatusUnauthorized},
		{"unknown user", "/metrics", "other", "s3cret", http.StatusUnauthorized},
		{"metrics", "/metrics", "prometheus", "s3cret", http.StatusOK},
		{"healthz", "/healthz", "prometheus", "s3cret", http.StatusOK},
		{"readyz", "/readyz", "prometheus", "s3cret", http.StatusOK},
		{"healthz without credentials", "/healthz", "", "", http.StatusUnauthorized},
		{"pprof", "/debug/pprof/", "prometheus", "s3cret", http.StatusOK},
		{"pprof without credentials", "/debug/pprof/", "", "", http.StatusUnauthorized},
		{"heap profile without credentials", "/debug/pprof/heap", "", "", http.StatusUnauthorized},
		{"an added endpoint", "/sd", "prometheus", "s3cret", http.StatusOK},
		{"an added endpoint without credentials", "/sd", "", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := do(t, client, "http://"+s.Addr()+tt.path, tt.user, tt.password); got != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}

func TestPprof(t *testing.T) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tests := []struct {
		name string
		opts []Option
		path string
		want int
	}{
		{"index", []Option{WithPprof(true)}, "/debug/pprof/", http.StatusOK},
		{"heap", []Option{WithPprof(true)}, "/debug/pprof/heap?debug=1", http.StatusOK},
		{"goroutine", []Option{WithPprof(true)}, "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{"cmdline", []Option{WithPprof(true)}, "/debug/pprof/cmdline", http.StatusOK},
		{"symbol", []Option{WithPprof(true)}, "/debug/pprof/symbol", http.StatusOK},
		{"unknown profile", []Option{WithPprof(true)}, "/debug/pprof/nosuch", http.StatusNotFound},
		{"off by default: index", nil, "/debug/pprof/", http.StatusNotFound},
		{"off by default: heap", nil, "/debug/pprof/heap?debug=1", http.StatusNotFound},
		{"disabled: index", []Option{WithPprof(false)}, "/debug/pprof/", http.StatusNotFound},
		{"disabled: heap", []Option{WithPprof(false)}, "/debug/pprof/heap?debug=1", http.StatusNotFound},
		{"disabled: cmdline", []Option{WithPprof(false)}, "/debug/pprof/cmdline", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, "", tt.opts...)
			if got := do(t, client, "http://"+s.Addr()+tt.path, "", ""); got != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, got, tt.want)
			}
			if got := do(t, client, "http://"+s.Addr()+"/metrics", "", ""); got != http.StatusOK {
				t.Errorf("GET /metrics beside pprof: %d", got)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	self := testenv.SelfSigned(t, testenv.CertOptions{CommonName: "prometheus-streams monitor test", IPAddresses: testenv.Loopback(), Server: true})
	cert, key := self.Write(t, dir, "monitor.crt", "monitor.key")
	webConfig := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: "+cert+"\n  key_file: "+key+"\n")
	if scheme, err := Scheme(webConfig); err != nil || scheme != "https" {
		t.Fatalf("Scheme = %q, %v; want https", scheme, err)
	}
	s := serve(t, webConfig)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: self.Pool(), MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	if got := do(t, client, "https://"+s.Addr()+"/metrics", "", ""); got != http.StatusOK {
		t.Fatalf("GET https /metrics: %d", got)
	}
	// Plain HTTP to the TLS port is refused by the server.
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	if got := do(t, &http.Client{Transport: plain, Timeout: 10 * time.Second}, "http://"+s.Addr()+"/metrics", "", ""); got != http.StatusBadRequest {
		t.Fatalf("GET http on the TLS port: %d, want 400", got)
	}
}

func TestBadWebConfigIsReported(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"missing file", filepath.Join(dir, "none.yml"), "no such file"},
		{"unknown key", writeFile(t, dir, "typo.yml", "basic_auth_user:\n  a: b\n"), "basic_auth_user"},
		{"password not hashed", writeFile(t, dir, "plain.yml", "basic_auth_users:\n  a: s3cret\n"), "hash"},
		{"key without cert", writeFile(t, dir, "nocert.yml", "tls_server_config:\n  key_file: k.pem\n"), "cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New("127.0.0.1:0", tt.path, prometheus.NewRegistry(), func() bool { return true }, slog.New(slog.DiscardHandler))
			if err == nil {
				_ = s.listener.Close()
				t.Fatal("New accepted the file")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "web config") {
				t.Fatalf("New: %v, want a web config error mentioning %q", err, tt.wantErr)
			}
		})
	}
}
