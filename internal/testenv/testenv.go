// Package testenv holds what the tests of several packages share: waiting
// for a condition, running a component for the length of a test, and
// exporters serving the real exposition samples in testdata/.
package testenv

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it holds, failing the
// test with what when timeout passes first. Tests wait for conditions this
// way instead of sleeping and hoping.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run runs fn in a goroutine until the returned stop is called or the test
// ends; stop cancels fn's context and waits for it, reporting an error it
// returned.
func Run(t testing.TB, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("component returned: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Content types of the samples.
const (
	TextContentType  = "text/plain; version=0.0.4; charset=utf-8"
	ProtoContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// Sample returns the bytes of testdata/<name> at the repository root (the
// real scrapes copied from ../shared/corpus).
func Sample(t testing.TB, name string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", name))
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	return b
}

// Exporter serves body with contentType at any path until the test ends.
func Exporter(t testing.TB, body []byte, contentType string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// FreeAddr returns a loopback host:port nothing listens on, FreePort's:
// for servers a test starts later, and for connections that must be
// refused.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// SyncBuffer is a bytes.Buffer safe for a logger writing while a test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
