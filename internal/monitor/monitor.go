// Package monitor serves a daemon's own metrics and health on the
// monitor_port: /metrics, /healthz (the process runs), /readyz (its
// stream connection is up) and, when enabled, POST /-/reload and Go's
// profiles under /debug/pprof/, and what else the daemon adds (the
// receiver's /sd and /scrape). TLS and basic auth come from an exporter-toolkit web
// configuration file, as in every Prometheus exporter.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"
)

// Server is the monitor HTTP server.
type Server struct {
	listener  net.Listener
	srv       *http.Server
	webConfig string
	log       *slog.Logger
}

// Option changes what New serves.
type Option func(*options)

type options struct {
	pprof    bool
	reload   func(context.Context) error
	handlers []route
}

// route is a handler served beside the monitor's own.
type route struct {
	pattern string
	h       http.Handler
}

// WithHandler serves h at pattern (net/http.ServeMux's syntax, such as
// "GET /sd") behind the same TLS and authentication as /metrics: the
// receiver's serving output lives on the monitor endpoint, so Prometheus
// reaches /metrics, /sd and the targets with one set of credentials.
func WithHandler(pattern string, h http.Handler) Option {
	return func(o *options) { o.handlers = append(o.handlers, route{pattern, h}) }
}

// WithReload serves POST /-/reload, as Prometheus does: it calls reload
// and answers 200 when it returns nil, else 500 with the error's text as
// the body, so that the operator (or the tool that changed the file) sees
// why the file was refused. Other methods get 405. It is behind the same
// TLS and authentication as /metrics: whoever can reach it can make the
// process re-read its configuration, nothing more. reload gets the
// request's context and must serialise concurrent calls itself.
func WithReload(reload func(context.Context) error) Option {
	return func(o *options) { o.reload = reload }
}

// WithPprof serves net/http/pprof's index, profiles, cmdline, symbol and
// trace under /debug/pprof/ when enabled (monitor_pprof), behind the same
// TLS and authentication as /metrics, on the monitor's own mux. (Importing
// net/http/pprof also registers them on http.DefaultServeMux, as
// nats-server's import of it already did; nothing in this program serves
// that mux, so they are reachable only here, and only when enabled.) Profiles expose
// the process's internals (its command line, goroutine stacks) and cost
// CPU while they are taken, so they are off unless asked for.
func WithPprof(enabled bool) Option {
	return func(o *options) { o.pprof = enabled }
}

// New checks the web configuration file webConfig (exporter-toolkit's
// format: tls_server_config, basic_auth_users...; "" serves plain HTTP
// without authentication) and listens on addr (host:port; an empty host is
// every interface, as 1.0 did) right away, so a bad file or a port clash
// is reported at start-up. The file is read again for every connection and
// request, so certificates and users can change without a restart. ready
// decides /readyz.
func New(addr, webConfig string, g prometheus.Gatherer, ready func() bool, logger *slog.Logger, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := web.Validate(webConfig); err != nil {
		return nil, fmt.Errorf("monitor: web config %s: %w", webConfig, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "stream not connected", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if o.reload != nil {
		reload := func(w http.ResponseWriter, r *http.Request) {
			if err := o.reload(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}
		// Prometheus takes both methods on its /-/reload.
		mux.HandleFunc("POST /-/reload", reload)
		mux.HandleFunc("PUT /-/reload", reload)
	}
	if o.pprof {
		handlePprof(mux)
	}
	for _, r := range o.handlers {
		mux.Handle(r.pattern, r.h)
	}
	return &Server{
		listener:  ln,
		srv:       &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		webConfig: webConfig,
		log:       logger,
	}, nil
}

// handlePprof registers net/http/pprof's handlers on mux as that package
// registers them on http.DefaultServeMux: Index serves the named profiles
// (heap, goroutine, allocs...) under the /debug/pprof/ prefix, and symbol
// takes POST as well, for go tool pprof.
func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Scheme returns the scheme the monitor serves with the web configuration
// file webConfig: "https" when it has a tls_server_config certificate,
// else "http". It reads the file; New checks it in full.
func Scheme(webConfig string) (string, error) {
	if webConfig == "" {
		return "http", nil
	}
	data, err := os.ReadFile(webConfig)
	if err != nil {
		return "", fmt.Errorf("monitor: web config: %w", err)
	}
	var c struct {
		TLS struct {
			Cert     string `yaml:"cert"`
			CertFile string `yaml:"cert_file"`
		} `yaml:"tls_server_config"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("monitor: web config %s: %w", webConfig, err)
	}
	if c.TLS.Cert != "" || c.TLS.CertFile != "" {
		return "https", nil
	}
	return "http", nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Run serves until ctx is done, then shuts down gracefully (bounded).
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		errc <- web.Serve(s.listener, s.srv, &web.FlagConfig{WebConfigFile: &s.webConfig}, s.log)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("monitor: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("monitor: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("monitor: serve: %w", err)
	}
	return nil
}
