package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/discovery"
)

func newCheckConfigCmd(g *globalFlags) *cobra.Command {
	var roles []string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration file and print the resolved targets",
		Long: "Validate the configuration file for the roles given with --role (default: every role whose " +
			"sections the file has) and print the resolved targets, those of the file_sd files read once included, " +
			"and the file_sd entries a poller would refuse; for the receiver, print its resolved push_gateway and serve " +
			"settings. Exit status 1 names the offending key and line; " +
			"refused file_sd entries do not change it, as a running poller skips them and scrapes the rest.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.config)
			if err != nil {
				return err
			}
			want := cfg.Roles()
			if len(roles) > 0 {
				want = nil
				for _, r := range roles {
					if r != string(config.RolePoller) && r != string(config.RoleReceiver) {
						return fmt.Errorf("--role: %q is not poller or receiver", r)
					}
					want = append(want, config.Role(r))
				}
			}
			if len(want) == 0 {
				return fmt.Errorf("%s: neither poller_stream nor receiver_stream is set: the file configures no role", g.config)
			}
			for _, r := range want {
				if err := cfg.Validate(r); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			for _, w := range cfg.Warnings {
				fmt.Fprintf(out, "warning: %s\n", w)
			}
			fmt.Fprintf(out, "%s: valid for %v\n", g.config, want)
			if slices.Contains(want, config.RolePoller) {
				fmt.Fprintf(out, "poller: identity %s, client_id %s, scrape_interval %s, scrape_timeout %s\n",
					cfg.Identity, cfg.ClientID(config.RolePoller), cfg.ScrapeInterval, cfg.ScrapeTimeout)
				printStream(out, cfg, config.RolePoller)
				if err := printTargets(out, cfg); err != nil {
					return err
				}
			}
			if slices.Contains(want, config.RoleReceiver) {
				printReceiver(out, cfg)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&roles, "role", nil, "validate for these roles (poller, receiver)")
	return cmd
}

// printTargets prints every target a poller would scrape: the static ones
// and those the file_sd files list now, then the file_sd entries it would
// refuse.
func printTargets(out io.Writer, cfg *config.Config) error {
	static := cfg.Targets()
	jobs, refused := discovery.Read(cfg, static)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tINSTANCE\tURL")
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		for _, t := range jobs[job] {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Job, t.Name, redact(t.URL))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, job := range slices.Sorted(maps.Keys(cfg.Jobs)) {
		if sds := cfg.Jobs[job].FileSDConfigs; len(sds) > 0 {
			static := len(slices.DeleteFunc(slices.Clone(static), func(t config.Target) bool { return t.Job != job }))
			fmt.Fprintf(out, "file_sd: job %s: %d targets from %d file_sd_configs entries\n", job, len(jobs[job])-static, len(sds))
		}
	}
	for _, r := range refused {
		fmt.Fprintf(out, "file_sd: refused (%s): %v\n", r.Reason, r)
	}
	return nil
}

// printReceiver prints the receiver's resolved settings: its stream, then
// each output, push_gateway and serve_targets, with "none" or "false" for
// one it does not use, so that a serve section that was never enabled
// shows.
func printReceiver(out io.Writer, cfg *config.Config) {
	if cfg.ReceiverStream != nil && cfg.ReceiverStream.JetStream() {
		fmt.Fprintf(out, "receiver: client_id %s, max_age %s\n", cfg.ClientID(config.RoleReceiver), cfg.MaxAge)
	} else {
		fmt.Fprintf(out, "receiver: client_id (durable) %s, max_age %s\n", cfg.ClientID(config.RoleReceiver), cfg.MaxAge)
	}
	printStream(out, cfg, config.RoleReceiver)
	if pg := cfg.PushGateway; pg != nil {
		fmt.Fprintf(out, "receiver: push_gateway %s, publisher_label %v\n", redact(pg.URL), pg.PublisherLabel)
	} else {
		fmt.Fprintln(out, "receiver: push_gateway none")
	}
	s := cfg.Serve
	if !cfg.ServeTargets || s == nil {
		fmt.Fprintln(out, "receiver: serve_targets false")
		return
	}
	address := s.Address
	if address == "" {
		address = "(the Host of each /sd request)"
	}
	label := "false"
	if s.PublisherLabel {
		label = "true (" + s.PublisherLabelName + ")"
	}
	fmt.Fprintf(out, "receiver: serve_targets true, /sd on the monitor endpoint %s, address %s, publisher_label %s, "+
		"delete_after %s, max_groups %d, max_bytes %s, max_concurrent_scrapes %d, write_timeout %s\n",
		cfg.MonitorAddress(), address, label, s.DeleteAfter, s.MaxGroups, s.MaxBytes, s.MaxConcurrentScrapes, s.WriteTimeout)
}

// redact hides a password in a URL's user info, so check-config output can
// be pasted into a ticket.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}

// printStream prints role's resolved transport: for JetStream the stream,
// its subjects and, for the receiver, the consumers; for NATS Streaming
// the channel.
func printStream(out io.Writer, cfg *config.Config, role config.Role) {
	sc := cfg.Stream(role)
	if sc == nil {
		return
	}
	if !sc.JetStream() {
		fmt.Fprintf(out, "%s: NATS Streaming cluster %s, channel %s\n", role, sc.ClusterID, sc.Topic)
		return
	}
	domain := "the connection's own"
	if sc.Domain != "" {
		domain = sc.Domain
	}
	fmt.Fprintf(out, "%s: JetStream stream %s (domain %s), subjects %s.<publisher>.<job>.<instance>\n", role, sc.Stream, domain, sc.Subject())
	if role == config.RolePoller {
		if sc.Creates() {
			fmt.Fprintf(out, "poller: creates the stream when missing: max_msgs_per_subject 1, max_age %s, storage %s, replicas %d, max_bytes %s\n",
				cfg.MaxAge, sc.Storage, sc.Replicas, maxBytes(sc.MaxBytes))
		} else {
			fmt.Fprintln(out, "poller: never creates the stream (create_stream: false)")
		}
		return
	}
	if cfg.PushGateway != nil {
		fmt.Fprintf(out, "receiver: push_gateway consumes the durable consumer %s shared by every receiver of this configuration (pinned, pinned_ttl %s, ack_wait %s, max_inflight %d)\n",
			sc.Consumer, sc.PinnedTTL, sc.AckWait, sc.MaxInflight)
	}
	if cfg.ServeTargets {
		fmt.Fprintln(out, "receiver: serve_targets follows the stream with an ordered consumer of its own, from the last message of every subject")
	}
}

func maxBytes(b config.ByteSize) string {
	if b <= 0 {
		return "unlimited"
	}
	return b.String()
}
