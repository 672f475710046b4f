package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/spf13/cobra"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/discovery"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/monitor"
	"github.com/choria-io/prometheus-streams/internal/reload"
	"github.com/choria-io/prometheus-streams/output"
	"github.com/choria-io/prometheus-streams/output/push"
	"github.com/choria-io/prometheus-streams/output/serve"
	"github.com/choria-io/prometheus-streams/poller"
	"github.com/choria-io/prometheus-streams/pushgateway"
	"github.com/choria-io/prometheus-streams/receiver"
	"github.com/choria-io/prometheus-streams/stream"
)

func newDaemonCmd(g *globalFlags, role, short string) *cobra.Command {
	return &cobra.Command{
		Use:   role,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.config)
			if err != nil {
				return err
			}
			if err := cfg.Validate(config.Role(role)); err != nil {
				return err
			}
			logger, closeLog, err := newLogger(g, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { _ = closeLog() }()
			for _, w := range cfg.Warnings {
				logger.Warn(w)
			}
			if g.pidFile != "" {
				if err := os.WriteFile(g.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
					return fmt.Errorf("write pid file: %w", err)
				}
				defer func() { _ = os.Remove(g.pidFile) }()
			}
			reg := newRegistry()
			var d *daemon
			if role == string(config.RolePoller) {
				d, err = buildPoller(cfg, logger, reg)
			} else {
				d, err = buildReceiver(cfg, logger, reg)
			}
			if err != nil {
				return err
			}
			reloader, err := reload.New(reload.Options{Path: g.config, Role: config.Role(role), Current: cfg, Applier: d.applier}, logger, reg)
			if err != nil {
				return err
			}
			d.background = append(d.background, func(ctx context.Context) error { return reloader.Run(ctx, g.hup) })
			if cfg.MonitorPort > 0 {
				opts := append([]monitor.Option{monitor.WithPprof(cfg.MonitorPprof), monitor.WithReload(reloader.Reload)}, d.monitorOptions...)
				mon, err := monitor.New(cfg.MonitorAddress(), cfg.MonitorWebConfig, reg, d.ready, logger, opts...)
				if err != nil {
					return err
				}
				d.monitors = append(d.monitors, mon)
			}
			logger.Info("starting", "role", role, "version", versionString(), "config", g.config)
			err = d.run(cmd.Context())
			logger.Info("stopped", "role", role)
			return err
		},
	}
}

// newRegistry returns a registry with the process and Go runtime metrics;
// never the global default registry.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("prometheus_streams"),
	)
	return reg
}

// daemon is a built poller or receiver: the work (which ends once its
// context is done and in-flight work is finished), the stream connection
// it needs until then, what runs beside the work (file discovery, reloads
// on SIGHUP), and the monitor servers.
type daemon struct {
	work       func(context.Context) error
	conn       func(context.Context) error // nil when work owns its connection
	background []func(context.Context) error
	ready      func() bool
	monitors   []*monitor.Server
	applier    reload.Applier // what a reload applies to
	// monitorOptions add the role's own endpoints to the monitor.
	monitorOptions []monitor.Option
}

// run starts everything and shuts down in order once ctx is done: the
// work first (it finishes what is in flight) with what runs beside it,
// then the stream connection, then the monitor, so /metrics answers until
// the end.
func (d *daemon) run(ctx context.Context) error {
	background := context.WithoutCancel(ctx)
	monCtx, stopMon := context.WithCancel(background)
	monErr := make(chan error, len(d.monitors))
	for _, m := range d.monitors {
		go func() { monErr <- m.Run(monCtx) }()
	}
	connCtx, stopConn := context.WithCancel(background)
	connErr := make(chan error, 1)
	if d.conn != nil {
		go func() { connErr <- d.conn(connCtx) }()
	} else {
		connErr <- nil
	}
	// What runs beside the work stops with it, also when the work ends by
	// itself (a failed subscription).
	bgCtx, stopBg := context.WithCancel(ctx)
	bgErr := make(chan error, len(d.background))
	for _, fn := range d.background {
		go func() { bgErr <- fn(bgCtx) }()
	}
	err := d.work(ctx)
	stopBg()
	for range d.background {
		if berr := <-bgErr; err == nil {
			err = berr
		}
	}
	stopConn()
	if cerr := <-connErr; err == nil {
		err = cerr
	}
	stopMon()
	for range d.monitors {
		if merr := <-monErr; err == nil {
			err = merr
		}
	}
	return err
}

func streamOptions(cfg *config.Config, role config.Role) (stream.STANOptions, error) {
	sc := cfg.Stream(role)
	opts := stream.STANOptions{
		URLs:           sc.URLs,
		ClusterID:      sc.ClusterID,
		ClientID:       cfg.ClientID(role),
		Channel:        sc.Topic,
		ConnectTimeout: time.Duration(sc.ConnectTimeout),
		AckWait:        time.Duration(sc.AckWait),
		MaxInflight:    sc.MaxInflight,
		Credentials:    sc.Credentials,
		NKeySeedFile:   sc.NKey,
		User:           sc.User,
		Password:       sc.Password,
		Token:          sc.Token,
	}
	var err error
	opts.TLS, err = streamTLS(cfg, role)
	return opts, err
}

// streamTLS is the client TLS of role's stream section, nil without one.
func streamTLS(cfg *config.Config, role config.Role) (*tls.Config, error) {
	t := cfg.StreamTLS(role)
	if t == nil {
		return nil, nil
	}
	tc, err := t.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s tls: %w", role, err)
	}
	return tc, nil
}

// jsOptions are the JetStream options of role's stream section.
func jsOptions(cfg *config.Config, role config.Role) (stream.JSOptions, error) {
	sc := cfg.Stream(role)
	opts := stream.JSOptions{
		URLs:           sc.URLs,
		Name:           cfg.ClientID(role),
		ConnectTimeout: time.Duration(sc.ConnectTimeout),
		Credentials:    sc.Credentials,
		NKeySeedFile:   sc.NKey,
		User:           sc.User,
		Password:       sc.Password,
		Token:          sc.Token,
		Stream:         sc.Stream,
		Domain:         sc.Domain,
		Topic:          sc.Subject(),
		AckWait:        time.Duration(sc.AckWait),
		MaxInflight:    sc.MaxInflight,
		Consumer:       sc.Consumer,
		PinnedTTL:      time.Duration(sc.PinnedTTL),
	}
	if sc.Creates() {
		storage := jetstream.FileStorage
		if sc.Storage == config.StorageMemory {
			storage = jetstream.MemoryStorage
		}
		opts.Create = &stream.StreamSettings{
			MaxAge: time.Duration(cfg.MaxAge), MaxBytes: int64(sc.MaxBytes), Replicas: sc.Replicas, Storage: storage,
		}
	}
	var err error
	opts.TLS, err = streamTLS(cfg, role)
	return opts, err
}

// publisher is what the poller publishes with, and how its connection runs.
type publisher interface {
	stream.Publisher
	Run(context.Context) error
	Connected() bool
}

// newPublisher builds the poller's publisher for its stream section's
// transport.
func newPublisher(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (publisher, int, error) {
	if cfg.PollerStream.JetStream() {
		o, err := jsOptions(cfg, config.RolePoller)
		if err != nil {
			return nil, 0, err
		}
		p, err := stream.NewJSPublisher(o, logger, reg)
		return p, o.MaxInflight, err
	}
	so, err := streamOptions(cfg, config.RolePoller)
	if err != nil {
		return nil, 0, err
	}
	p, err := stream.NewSTANPublisher(so, logger, reg)
	return p, so.MaxInflight, err
}

// codec maps the validated compression key to the envelope's codec.
func codec(compression string) envelope.Codec {
	if compression == config.CompressionZstd {
		return envelope.CodecZstd
	}
	return envelope.CodecSnappy
}

// staticTargets are cfg's static targets as the poller scrapes them.
func staticTargets(cfg *config.Config) ([]config.Target, error) {
	return selfScrapeScheme(cfg, cfg.Targets())
}

func buildPoller(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*daemon, error) {
	static, err := staticTargets(cfg)
	if err != nil {
		return nil, err
	}
	pub, maxInflight, err := newPublisher(cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	// The targets come from disc, which merges the static ones with those
	// of the file_sd files; the poller builds each job's HTTP client.
	p, err := poller.New(poller.Options{
		Identity:    cfg.Identity,
		Interval:    time.Duration(cfg.ScrapeInterval),
		Timeout:     time.Duration(cfg.ScrapeTimeout),
		BodyLimit:   int64(cfg.BodySizeLimit),
		MaxInflight: maxInflight,
		UserAgent:   "prometheus-streams/" + versionString(),
		Codec:       codec(cfg.Compression),
	}, pub, logger, reg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.New(p, logger, reg)
	if err != nil {
		return nil, err
	}
	if _, err := disc.Apply(cfg, static); err != nil {
		return nil, err
	}
	return &daemon{
		work: p.Run, conn: pub.Run, ready: pub.Connected,
		background: []func(context.Context) error{disc.Run},
		applier:    reload.Poller{Discovery: disc, Poller: p, Targets: staticTargets},
	}, nil
}

func buildReceiver(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*daemon, error) {
	var (
		outs     []output.Output
		applier  = reload.Receiver{}
		handlers []monitor.Option
	)
	if cfg.PushGateway != nil {
		pushOut, err := buildPushOutput(cfg, logger, reg)
		if err != nil {
			return nil, err
		}
		outs, applier.Push = append(outs, pushOut), pushOut
	}
	if cfg.ServeTargets {
		serveOut, err := buildServeOutput(cfg, logger, reg)
		if err != nil {
			return nil, err
		}
		outs, applier.Serve = append(outs, serveOut), serveOut
		handlers = append(handlers,
			monitor.WithHandler("GET "+serve.SDPath, serveOut.SDHandler()),
			monitor.WithHandler("GET "+serve.ScrapePath, serveOut.ScrapeHandler()))
	}
	routes, ready, err := receiverRoutes(cfg, applier, outs, logger, reg)
	if err != nil {
		return nil, err
	}
	r, err := receiver.NewRoutes(receiver.Options{
		MaxAge:     time.Duration(cfg.MaxAge),
		Publishers: cfg.Publishers,
	}, routes, logger, reg)
	if err != nil {
		return nil, err
	}
	applier.Receiver = r
	// The receiver owns its subscriptions' lifetime (it acknowledges
	// what the outputs settle during shutdown before closing them), so
	// there is no separate conn.
	return &daemon{work: r.Run, ready: ready, applier: applier, monitorOptions: handlers}, nil
}

// receiverRoutes are the receiver's subscriptions. NATS Streaming has one
// durable for every output. On JetStream the Pushgateway output shares a
// pinned durable consumer with every receiver of this configuration (one
// writes the Pushgateway, the others stand by), and the serving output
// follows the stream with a consumer of this receiver's own, so each
// receiver of a hot pair serves every group.
func receiverRoutes(cfg *config.Config, a reload.Receiver, outs []output.Output, logger *slog.Logger, reg prometheus.Registerer) ([]receiver.Route, func() bool, error) {
	if !cfg.ReceiverStream.JetStream() {
		so, err := streamOptions(cfg, config.RoleReceiver)
		if err != nil {
			return nil, nil, err
		}
		sub, err := stream.NewSTANSubscriber(so, logger, reg)
		if err != nil {
			return nil, nil, err
		}
		return []receiver.Route{{Sub: sub, Outputs: outs}}, sub.Connected, nil
	}
	o, err := jsOptions(cfg, config.RoleReceiver)
	if err != nil {
		return nil, nil, err
	}
	var (
		routes []receiver.Route
		checks []func() bool
	)
	if a.Push != nil {
		// The consistency check assumes one writer at a time: the one
		// taking over first learns what the other one pushed.
		po := o
		a.Push.WaitForTurn()
		po.OnActive, po.OnInactive = a.Push.Resync, a.Push.Stop
		sub, err := stream.NewJSSubscriber(po, logger, reg)
		if err != nil {
			return nil, nil, err
		}
		routes, checks = append(routes, receiver.Route{Sub: sub, Outputs: []output.Output{a.Push}}), append(checks, sub.Connected)
	}
	if a.Serve != nil {
		f, err := stream.NewJSFollower(o, logger, reg)
		if err != nil {
			return nil, nil, err
		}
		routes, checks = append(routes, receiver.Route{Sub: f, Outputs: []output.Output{a.Serve}}), append(checks, f.Connected)
	}
	return routes, func() bool {
		for _, c := range checks {
			if !c() {
				return false
			}
		}
		return true
	}, nil
}

// buildPushOutput builds the Pushgateway output of push_gateway.
func buildPushOutput(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*push.Output, error) {
	pg := cfg.PushGateway
	hc, err := pushgatewayHTTPClient(pg)
	if err != nil {
		return nil, err
	}
	client, err := pushgateway.New(pushgateway.Options{
		URL:        pg.URL,
		HTTPClient: hc,
		Timeout:    time.Duration(pg.Timeout),
		UserAgent:  "prometheus-streams/" + versionString(),
	})
	if err != nil {
		return nil, fmt.Errorf("push_gateway: %w", err)
	}
	return push.New(push.Options{
		MaxAge:             time.Duration(cfg.MaxAge),
		BodyLimit:          int64(cfg.BodySizeLimit),
		Concurrency:        pg.Concurrency,
		PublisherLabel:     pg.PublisherLabel,
		PublisherLabelName: pg.PublisherLabelName,
		PushTimeout:        time.Duration(pg.Timeout),
		DownAfter:          time.Duration(pg.DownAfter),
		DeleteAfter:        time.Duration(pg.DeleteAfter),
	}, client, logger, reg)
}

// buildServeOutput builds the target-serving output of serve_targets. Its
// handlers go on the monitor endpoint, whose scheme /sd announces.
func buildServeOutput(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*serve.Output, error) {
	sc := cfg.Serve
	scheme := sc.Scheme
	if scheme == "" {
		var err error
		if scheme, err = monitor.Scheme(cfg.MonitorWebConfig); err != nil {
			return nil, err
		}
	}
	return serve.New(serve.Options{
		MaxAge:               time.Duration(cfg.MaxAge),
		DeleteAfter:          time.Duration(sc.DeleteAfter),
		PublisherLabel:       sc.PublisherLabel,
		PublisherLabelName:   sc.PublisherLabelName,
		Address:              sc.Address,
		Scheme:               scheme,
		MaxGroups:            sc.MaxGroups,
		MaxBytes:             int64(sc.MaxBytes),
		MaxConcurrentScrapes: sc.MaxConcurrentScrapes,
		WriteTimeout:         time.Duration(sc.WriteTimeout),
		BodyLimit:            int64(cfg.BodySizeLimit),
	}, logger, reg)
}
