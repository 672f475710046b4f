package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/monitor"
	"github.com/choria-io/prometheus-streams/output/serve"
)

type demoFlags struct {
	pushgatewayListen string
	targets           []string
	interval          time.Duration
	stan              bool
}

func newDemoCmd(g *globalFlags) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline in one process: embedded NATS with JetStream and Pushgateway, a poller and a receiver that pushes and serves",
		Long: "Start an embedded nats-server with JetStream (a temporary file store, loopback, a free port; --stan: NATS Streaming " +
			"with a memory store instead) and an embedded Pushgateway " +
			"(the real Pushgateway code) on --pushgateway-listen, then a poller that scrapes its own metrics (job prometheus_streams) " +
			"and every --target (job demo, instance host:port of the URL) and a receiver that pushes into the Pushgateway and serves " +
			"every target to Prometheus at /sd (http_sd) on the monitor endpoint. " +
			"Ctrl-C stops it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, g, f) },
	}
	cmd.Flags().StringVar(&f.pushgatewayListen, "pushgateway-listen", "127.0.0.1:9091", "address of the embedded Pushgateway")
	cmd.Flags().StringArrayVar(&f.targets, "target", nil, "URL of an exporter to scrape as job demo (repeatable)")
	cmd.Flags().DurationVar(&f.interval, "scrape-interval", 5*time.Second, "scrape interval")
	cmd.Flags().BoolVar(&f.stan, "stan", false, "carry the scrapes over NATS Streaming (1.0's transport) instead of JetStream")
	return cmd
}

func runDemo(cmd *cobra.Command, g *globalFlags, f *demoFlags) error {
	ctx := cmd.Context()
	logger, closeLog, err := newLogger(g, nil, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()
	for _, t := range f.targets {
		if u, err := url.Parse(t); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--target %q: not an http(s) URL", t)
		}
	}

	transport, shutdown, err := startDemoNATS(f, logger)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer shutdown()
	pgw, err := embedded.StartPushgateway(embedded.PushgatewayOptions{Listen: f.pushgatewayListen, Logger: logger.With("component", "pushgateway")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = pgw.Close(sctx)
	}()
	monPort, err := freePort()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cfg, err := config.Parse([]byte(demoConfig(transport, pgw.URL(), monPort, f)), "demo")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, r := range []config.Role{config.RolePoller, config.RoleReceiver} {
		if err := cfg.Validate(r); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}

	reg := newRegistry()
	p, err := buildPoller(cfg, logger, reg)
	if err != nil {
		return err
	}
	r, err := buildReceiver(cfg, logger, reg)
	if err != nil {
		return err
	}
	// One monitor for both roles: the poller's metrics and the receiver's
	// /sd and /scrape.
	mon, err := monitor.New(cfg.MonitorAddress(), cfg.MonitorWebConfig, reg, func() bool { return p.ready() && r.ready() }, logger, r.monitorOptions...)
	if err != nil {
		return err
	}
	p.monitors = []*monitor.Server{mon}

	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "prometheus-streams demo\n")
	fmt.Fprintf(out, "  %s\n", transport.describe)
	fmt.Fprintf(out, "  Pushgateway     %s  its %s/metrics shows the pushed groups, as Prometheus scrapes them\n", pgw.URL(), pgw.URL())
	fmt.Fprintf(out, "  own metrics     http://%s/metrics\n", mon.Addr())
	fmt.Fprintf(out, "  served targets  http://%s%s  http_sd for a Prometheus job: http_sd_configs: [{url: 'http://%s%s'}]\n", mon.Addr(), serve.SDPath, mon.Addr(), serve.SDPath)
	for _, t := range cfg.Targets() {
		fmt.Fprintf(out, "  scraping        job=%s instance=%s  %s  every %s\n", t.Job, t.Name, t.URL, f.interval)
	}
	fmt.Fprintf(out, "Ctrl-C stops it.\n")

	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = p.run(ctx) })
	wg.Go(func() { errs[1] = r.run(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// demoNATS is the demo's embedded transport: its stream section and how
// the banner describes it.
type demoNATS struct {
	section  string // the keys of poller_stream and receiver_stream
	describe string
}

// startDemoNATS starts the embedded server the demo carries scrapes over.
func startDemoNATS(f *demoFlags, logger *slog.Logger) (demoNATS, func(), error) {
	if f.stan {
		s, err := embedded.StartStreaming(embedded.StreamingOptions{Logger: logger.With("component", "nats-streaming-server")})
		if err != nil {
			return demoNATS{}, nil, err
		}
		return demoNATS{
			section:  fmt.Sprintf("  cluster_id: %q\n  urls: %q\n  topic: prometheus\n", s.ClusterID(), s.URL()),
			describe: fmt.Sprintf("NATS Streaming  %s  cluster %s, channel prometheus (memory store)", s.URL(), s.ClusterID()),
		}, s.Shutdown, nil
	}
	n, err := embedded.StartNATS(embedded.NATSOptions{Logger: logger.With("component", "nats-server")})
	if err != nil {
		return demoNATS{}, nil, err
	}
	return demoNATS{
		section:  fmt.Sprintf("  stream: PROMETHEUS\n  urls: %q\n", n.URL()),
		describe: fmt.Sprintf("NATS JetStream  %s  stream PROMETHEUS, subjects prometheus.<publisher>.<job>.<instance> (temporary file store)", n.URL()),
	}, n.Shutdown, nil
}

// demoConfig is a configuration file, so the demo runs through the same
// loading and validation as the daemons.
func demoConfig(transport demoNATS, pgwURL string, monPort int, f *demoFlags) string {
	var b strings.Builder
	fmt.Fprintf(&b, "identity: demo\nscrape_interval: %s\nmonitor_port: %d\nmonitor_listen: 127.0.0.1\n", f.interval, monPort)
	for _, role := range []string{"poller_stream", "receiver_stream"} {
		fmt.Fprintf(&b, "%s:\n%s", role, transport.section)
	}
	fmt.Fprintf(&b, "push_gateway:\n  url: %q\n  publisher_label: true\nserve_targets: true\n", pgwURL)
	if len(f.targets) > 0 {
		b.WriteString("jobs:\n  demo:\n    targets:\n")
		for _, t := range f.targets {
			fmt.Fprintf(&b, "      - url: %q\n", t)
		}
	}
	return b.String()
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
