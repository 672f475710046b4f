// Command prometheus-streams carries Prometheus scrapes from remote data
// centres over NATS (JetStream, or NATS Streaming for 1.0 users) to a
// central Pushgateway or to the central Prometheus: `poller` in each DC,
// `receiver` centrally, `demo` for the whole pipeline in one process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/common/version"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SIGHUP reloads the configuration of a running poller or receiver, as
	// in Prometheus; other commands ignore it instead of dying of it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	code := runWith(ctx, hup, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(hup)
	stop()
	os.Exit(code)
}

// defaultConfigFile is where 1.0's packages put the configuration.
const defaultConfigFile = "/etc/prometheus-streams/prometheus-streams.yaml"

// globalFlags are parsed once here and passed down; nothing below reads flags.
type globalFlags struct {
	config    string
	logLevel  string
	logFormat string
	debug     bool
	pidFile   string
	// hup delivers SIGHUP, which main owns like every signal; not a flag,
	// but passed down the same way. nil: never.
	hup <-chan os.Signal
}

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, nil, args, stdout, stderr)
}

// runWith is run with the channel SIGHUP arrives on.
func runWith(ctx context.Context, hup <-chan os.Signal, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr, hup)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "prometheus-streams: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd(stdout, stderr io.Writer, hup <-chan os.Signal) *cobra.Command {
	g := &globalFlags{hup: hup}
	root := &cobra.Command{
		Use:           "prometheus-streams",
		Short:         "Carry Prometheus scrapes from remote data centres to a central Prometheus over NATS",
		Version:       version.Info(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	// The 1.0 flags (--config before the subcommand, --pid, --debug,
	// --version) keep working: persistent flags may come before it.
	pf.StringVar(&g.config, "config", defaultConfigFile, "configuration file")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (default info, or debug with debug: true in the file)")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: text or json (default: log_format in the file, else text)")
	pf.BoolVar(&g.debug, "debug", false, "log at debug level")
	pf.StringVar(&g.pidFile, "pid", "", "write the process id to this file while running")

	root.AddCommand(
		newDaemonCmd(g, "poller", "Scrape the configured targets and publish every scrape to the poller_stream"),
		newDaemonCmd(g, "receiver", "Consume the receiver_stream and push every group's newest scrape to the Pushgateway"),
		newDemoCmd(g),
		newBenchCmd(),
		newCheckConfigCmd(g),
		newManCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				fmt.Fprintln(cmd.OutOrStdout(), version.Print("prometheus-streams"))
				return nil
			},
		},
		&cobra.Command{
			Use:    "enroll",
			Short:  "Removed: 1.0's Puppet CA enrolment",
			Hidden: true,
			RunE: func(*cobra.Command, []string) error {
				return errors.New("enroll was removed in 2.0: obtain the certificate with `puppet ssl bootstrap` " +
					"(or your own CA), then point tls (scheme: puppet with ssl_dir, or scheme: file with ca, cert and key) at it")
			},
			DisableFlagParsing: true,
		},
	)
	return root
}
