package loadtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// exporters serves the sample body as N node exporters: targets are spread
// over several loopback listeners (perPort targets each, at /t/<i>/metrics),
// so the poller keeps one connection pool per listener as it would per
// exporter, without one listening socket per target (20,000 targets would
// need 40,000 file descriptors between both ends).
type exporters struct {
	body, gzipped []byte
	urls          []string
	lastServe     []atomic.Int64 // unix nanos of each target's latest request
	served        atomic.Int64
	servers       []*http.Server
}

func startExporters(n, perPort int, body []byte) (*exporters, error) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("gzip the sample: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip the sample: %w", err)
	}
	e := &exporters{body: body, gzipped: gz.Bytes(), lastServe: make([]atomic.Int64, n)}
	for first := 0; first < n; first += perPort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.close()
			return nil, fmt.Errorf("exporters: listen: %w", err)
		}
		srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
		e.servers = append(e.servers, srv)
		go func() { _ = srv.Serve(ln) }()
		for i := first; i < min(first+perPort, n); i++ {
			e.urls = append(e.urls, fmt.Sprintf("http://%s/t/%d/metrics", ln.Addr(), i))
		}
	}
	return e, nil
}

// ServeHTTP answers as the node exporter does: text 0.0.4, gzipped when
// asked. The body is compressed once up front, so the harness spends its
// CPU on the pipeline, not on playing exporter.
func (e *exporters) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i, ok := e.target(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	e.lastServe[i].Store(time.Now().UnixNano())
	e.served.Add(1)
	w.Header().Set("Content-Type", exporterContentType)
	body := e.body
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		body = e.gzipped
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// target parses /t/<i>/metrics.
func (e *exporters) target(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "/t/")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "/metrics")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || i >= len(e.lastServe) {
		return 0, false
	}
	return i, true
}

func (e *exporters) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range e.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	_ = errors.Join(errs...) // a bench that is finishing has nothing to do about it
}
