// Package reload re-reads the configuration file of a running poller or
// receiver and applies what can change live, one request at a time,
// whether it came from SIGHUP or POST /-/reload. A file that does not
// parse, does not validate for the role, or changes a key that needs a
// restart is refused whole, with the reason: the running configuration
// stays, so that an operator never believes a change applied when it did
// not.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
)

// Applier applies a configuration to the running components.
type Applier interface {
	// Apply applies cfg, which parsed, validated for the role and changes
	// only keys the role applies live. It returns what changed as slog
	// key-value pairs for the log line. An error must mean that nothing
	// changed.
	Apply(ctx context.Context, cfg *config.Config) ([]any, error)
}

// Options configures a Reloader.
type Options struct {
	// Path is the configuration file, read again on every reload.
	Path string
	// Role is what the process runs as; it decides what Validate checks
	// and which keys may change.
	Role config.Role
	// Current is the configuration the process started with.
	Current *config.Config
	// Applier applies an accepted configuration.
	Applier Applier
}

// ErrStopped is Reload's answer once Run has returned: the components a
// reload would change have stopped (the monitor still answers while the
// daemon shuts down).
var ErrStopped = errors.New("reload: the daemon is stopping")

// Reloader serialises reloads. Safe for concurrent use.
type Reloader struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	// turn is one slot: holding it is one reload at a time, and waiting
	// for it can be given up with a context, which a mutex cannot.
	turn    chan struct{}
	current *config.Config // guarded by turn
	stopped bool           // Run returned; guarded by turn
}

// New returns a Reloader and registers its metrics on reg; the start
// counts as the last successful load, as in Prometheus.
func New(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Reloader, error) {
	if opts.Current == nil || opts.Applier == nil || opts.Path == "" {
		return nil, fmt.Errorf("reload: Path, Current and Applier are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	r := &Reloader{opts: opts, log: logger.With("component", "reload"), metrics: m, now: time.Now, turn: make(chan struct{}, 1), current: opts.Current}
	m.succeeded(r.now())
	return r, nil
}

// Reload reads the file again and applies it, or refuses it and returns
// why; either way it logs the outcome and counts it. Concurrent calls
// wait for each other; ctx bounds that wait. Once Run has returned it
// returns ErrStopped and does nothing else.
func (r *Reloader) Reload(ctx context.Context) error {
	select {
	case r.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("reload: waiting for another reload: %w", ctx.Err())
	}
	defer func() { <-r.turn }()
	if r.stopped {
		return ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	attrs, err := r.reload(ctx)
	if err != nil {
		r.metrics.failed()
		r.log.Error("configuration reload refused; the running configuration stays", "file", r.opts.Path, "err", err)
		return err
	}
	r.metrics.succeeded(r.now())
	r.metrics.reloads.WithLabelValues(resultSuccess).Inc()
	r.log.Info("configuration reloaded", append([]any{"file", r.opts.Path}, attrs...)...)
	return nil
}

func (r *Reloader) reload(ctx context.Context) ([]any, error) {
	cfg, err := config.Load(r.opts.Path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(r.opts.Role); err != nil {
		return nil, err
	}
	if keys := config.RestartKeys(r.current, cfg, r.opts.Role); len(keys) > 0 {
		return nil, fmt.Errorf("%s: restart to apply: %s (nothing was applied)", r.opts.Path, strings.Join(keys, ", "))
	}
	attrs, err := r.opts.Applier.Apply(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: apply: %w (nothing was applied)", r.opts.Path, err)
	}
	for _, w := range cfg.Warnings {
		r.log.Warn(w)
	}
	r.current = cfg
	return attrs, nil
}

// Run reloads on every signal from hup until ctx is done. A refused
// reload is logged by Reload and does not end Run. When it returns, a
// reload under way has finished and later ones are refused (ErrStopped).
func (r *Reloader) Run(ctx context.Context, hup <-chan os.Signal) error {
	for {
		select {
		case <-ctx.Done():
			r.turn <- struct{}{}
			r.stopped = true
			<-r.turn
			return nil
		case sig := <-hup:
			r.log.Info("reloading the configuration", "signal", sig.String())
			_ = r.Reload(ctx) // logged and counted there
		}
	}
}
