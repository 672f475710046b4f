package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/choria-io/prometheus-streams/internal/loadtest"
)

func newBenchCmd() *cobra.Command {
	o := loadtest.Options{}
	var sample, transport string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline on loopback against the floor and raw Pushgateway PUTs",
		Long: "Serve --sample as --targets simulated exporters, start an embedded NATS Streaming server and Pushgateway, " +
			"and run this binary's poller and receiver as child processes. It prints, from one run: the floor of a " +
			"poller's work (GET + snappy + synchronous publish in a loop, in a process of its own), the poller's CPU per " +
			"scrape, bytes per message, scrape-to-Pushgateway latency, the receiver's drain rate of a backlog against raw " +
			"PUTs of the same body with the same concurrency, and each daemon's peak RSS. With --serve (or --serve-only) it " +
			"also runs a receiver with serve_targets holding --targets groups, which the harness feeds one scrape per group " +
			"per interval and scrapes through /sd as Prometheus would, and times the Pushgateway's GET /metrics holding the " +
			"same groups; --prometheus adds a real Prometheus scraping both. --transport runs the poller, delivery and drain " +
			"phases on NATS Streaming, on JetStream (an embedded nats-server with a temporary file store and stream: " +
			"PROMETHEUS sections), or on both, one after the other, and prints them side by side; the floor, the raw PUTs " +
			"and the serving phase run on NATS Streaming. docs/performance.md has results.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench: find this binary: %w", err)
			}
			body, err := os.ReadFile(sample)
			if err != nil {
				return fmt.Errorf("bench: --sample: %w", err)
			}
			switch transport {
			case "both":
				o.Transports = []string{loadtest.TransportSTAN, loadtest.TransportJetStream}
			case loadtest.TransportSTAN, loadtest.TransportJetStream:
				o.Transports = []string{transport}
			default:
				return fmt.Errorf("bench: --transport %q: want stan, jetstream or both", transport)
			}
			o.Executable, o.Sample, o.Progress = exe, body, cmd.ErrOrStderr()
			res, err := loadtest.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			return loadtest.Report(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sample, "sample", "testdata/node_exporter.prom", "exposition every simulated target serves")
	f.IntVar(&o.Targets, "targets", 100, "simulated exporters, and groups in the serving phase")
	f.IntVar(&o.PerPort, "targets-per-port", 10, "simulated exporters per listening socket")
	f.DurationVar(&o.Interval, "scrape-interval", 15*time.Second, "the poller's scrape interval")
	f.DurationVar(&o.Window, "window", 0, "steady state measured once every target was pushed (default 4 intervals)")
	f.StringVar(&transport, "transport", "both", "transport of the poller, delivery and drain phases: stan, jetstream or both (side by side)")
	f.StringVar(&o.Compression, "compression", "snappy", "the poller's compression: snappy or zstd")
	f.BoolVar(&o.PushgatewayCheck, "pushgateway-check", false, "leave the Pushgateway's consistency check on (off is --push.disable-consistency-check)")
	f.IntVar(&o.Concurrency, "concurrency", 4, "push_gateway.concurrency of the receiver, and raw PUT clients")
	f.IntVar(&o.Backlog, "backlog", 2000, "messages the receiver drains (rounded up to whole rounds over the targets)")
	f.IntVar(&o.FloorScrapes, "floor-scrapes", 2000, "length of the floor's loop")
	f.DurationVar(&o.PhaseTimeout, "phase-timeout", 2*time.Minute, "bound on the raw PUT and drain phases")
	f.BoolVar(&o.PollerOnly, "poller-only", false, "measure the poller alone: no receiver, no backlog")
	f.BoolVar(&o.Serve, "serve", false, "add the serving phase: --targets groups held by a receiver with serve_targets, scraped through /sd, next to the Pushgateway's GET /metrics holding them")
	f.BoolVar(&o.ServeOnly, "serve-only", false, "run the serving phase alone: no exporters, floor, poller or backlog")
	f.StringVar(&o.Prometheus, "prometheus", "", "a Prometheus binary (such as /usr/bin/prometheus) to run in the serving phase against /sd and the Pushgateway (implies --serve)")
	f.StringVar(&o.ProfileDir, "profile-dir", "", "save CPU profiles of the daemons here (turns on monitor_pprof)")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep configurations and daemon logs here (default: a temporary directory, removed after a successful run)")
	cmd.AddCommand(newBenchFloorCmd())
	return cmd
}

// newBenchFloorCmd is the floor's child process; bench runs it.
func newBenchFloorCmd() *cobra.Command {
	o := loadtest.FloorOptions{}
	cmd := &cobra.Command{
		Use:    "floor",
		Short:  "The floor's loop (run by bench): GET + snappy + synchronous publish; prints its CPU as JSON",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunFloor(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.URLs, "url", nil, "target to scrape (repeatable, scraped in turn)")
	f.StringVar(&o.NATSURL, "nats", "", "NATS URL")
	f.StringVar(&o.ClusterID, "cluster-id", "", "NATS Streaming cluster ID")
	f.StringVar(&o.Channel, "channel", "bench.floor", "channel to publish to")
	f.IntVar(&o.Scrapes, "scrapes", 2000, "scrapes to measure")
	return cmd
}
