package embedded

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/route"
	apiv1 "github.com/prometheus/pushgateway/api/v1"
	"github.com/prometheus/pushgateway/handler"
	"github.com/prometheus/pushgateway/storage"
)

// PushgatewayOptions configure StartPushgateway.
type PushgatewayOptions struct {
	// Listen is the address to bind, e.g. "127.0.0.1:0" (the default)
	// or "127.0.0.1:9091".
	Listen string
	// DisableConsistencyCheck is --push.disable-consistency-check: pushes
	// are answered 202 before the store has looked at them.
	DisableConsistencyCheck bool
	// Logger receives the Pushgateway's logs; nil discards them.
	Logger *slog.Logger
	// Middleware, when set, wraps the Pushgateway's handler: the load
	// harness times push arrivals with it, in front of the real code.
	Middleware func(http.Handler) http.Handler
}

// Pushgateway serves the real Pushgateway code in-process: its
// storage.DiskMetricStore in memory (no persistence file) and its handler
// and api/v1 packages on a route.Router, wired as the Pushgateway's main.go
// wires them (without the web UI, pprof and the lifecycle API). Methods are
// safe for concurrent use.
type Pushgateway struct {
	ms     *storage.DiskMetricStore
	srv    *http.Server
	url    string
	served chan error // receives Serve's result once

	closeOnce sync.Once
	closeErr  error
}

// StartPushgateway binds opts.Listen and starts serving; it returns once the
// socket accepts connections.
func StartPushgateway(opts PushgatewayOptions) (*Pushgateway, error) {
	listen := opts.Listen
	if listen == "" {
		listen = net.JoinHostPort(DefaultHost, "0")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "pushgateway")

	// A fresh registry stands in for the binary's default one on GET
	// /metrics; nothing of ours is registered on the default registry.
	// The store takes a Gatherer only to copy help strings from (the
	// handlers take no registry at all), but its consistency check
	// gathers prometheus.DefaultGatherer whatever it is given
	// (storage/diskmetricstore.go:387, checkWriteRequest). So help strings
	// are read from the default registry too: otherwise a pushed go_*
	// family whose help differs from this binary's Go collector (any
	// exporter built with another client_golang) is refused with a 400.
	// reg must not duplicate the default registry's families, or that
	// Gather fails and the store silently keeps no help strings at all.
	reg := prometheus.NewRegistry()
	ms := storage.NewDiskMetricStore("", 0, prometheus.Gatherers{reg, prometheus.DefaultGatherer}, logger)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		// The store's loop is already running; stop it.
		_ = ms.Shutdown()
		return nil, fmt.Errorf("pushgateway listen %s: %w", listen, err)
	}
	p := &Pushgateway{
		ms:     ms,
		url:    "http://" + clientAddr(ln.Addr()),
		served: make(chan error, 1),
	}
	h := newPushgatewayHandler(ms, reg, !opts.DisableConsistencyCheck, logger)
	if opts.Middleware != nil {
		h = opts.Middleware(h)
	}
	p.srv = &http.Server{
		Handler:           h,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	return p, nil
}

// newPushgatewayHandler mirrors the routing in the Pushgateway's main.go
// with an empty route prefix.
func newPushgatewayHandler(ms *storage.DiskMetricStore, reg prometheus.Gatherer, check bool, logger *slog.Logger) http.Handler {
	g := prometheus.Gatherers{
		reg,
		prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return ms.GetMetricFamilies(), nil }),
	}

	r := route.New()
	r.Get("/-/healthy", handler.Healthy(ms).ServeHTTP)
	r.Get("/-/ready", handler.Ready(ms).ServeHTTP)
	r.Get("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}).ServeHTTP)
	for _, suffix := range []string{"", handler.Base64Suffix} {
		jobBase64 := suffix == handler.Base64Suffix
		for _, p := range []string{"/metrics/job" + suffix + "/:job/*labels", "/metrics/job" + suffix + "/:job"} {
			r.Put(p, handler.Push(ms, true, check, jobBase64, logger))
			r.Post(p, handler.Push(ms, false, check, jobBase64, logger))
			r.Del(p, handler.Delete(ms, jobBase64, logger))
		}
	}

	av1 := route.New()
	apiv1.New(logger, ms, map[string]string{}, map[string]string{}).Register(av1)

	mux := http.NewServeMux()
	mux.Handle("/", decodeRequest(r))
	mux.Handle("/api/v1/", http.StripPrefix("/api/v1", av1))
	return mux
}

// decodeRequest is main.go's decodeRequest: it undoes a gzip or snappy
// Content-Encoding before the push handler parses the body.
func decodeRequest(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { _ = r.Body.Close() }()
		switch strings.ToLower(r.Header.Get("Content-Encoding")) {
		case "gzip":
			gr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer func() { _ = gr.Close() }()
			r.Body = gr
		case "snappy":
			r.Body = io.NopCloser(snappy.NewReader(r.Body))
		}
		h.ServeHTTP(w, r)
	})
}

// clientAddr turns a listener address into one a client can dial: an
// unspecified bind address (":0", "0.0.0.0") is reached on loopback.
func clientAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort(DefaultHost, strconv.Itoa(ta.Port))
}

// URL is the base URL, http://127.0.0.1:PORT.
func (p *Pushgateway) URL() string { return p.url }

// Close stops the HTTP server first (waiting for in-flight requests until
// ctx ends, then closing what is left), then shuts the store down so queued
// writes drain, as the Pushgateway's main.go does. Only the first call does
// the work; later ones return its result.
func (p *Pushgateway) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { p.closeErr = p.close(ctx) })
	return p.closeErr
}

func (p *Pushgateway) close(ctx context.Context) error {
	var errs []error
	if err := p.srv.Shutdown(ctx); err != nil {
		// ctx ended with requests still in flight: cut them off so
		// no handler goroutine outlives Close.
		errs = append(errs, fmt.Errorf("pushgateway http shutdown: %w", err))
		if err := p.srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("pushgateway http close: %w", err))
		}
	}
	if err := <-p.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("pushgateway http serve: %w", err))
	}
	if err := p.ms.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("pushgateway store shutdown: %w", err))
	}
	return errors.Join(errs...)
}
