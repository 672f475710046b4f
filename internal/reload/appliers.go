package reload

import (
	"context"
	"fmt"
	"time"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/discovery"
	"github.com/choria-io/prometheus-streams/output/push"
	"github.com/choria-io/prometheus-streams/output/serve"
	"github.com/choria-io/prometheus-streams/poller"
	"github.com/choria-io/prometheus-streams/receiver"
)

// Poller applies what a poller takes live: the jobs (static targets,
// file_sd_configs, HTTP client settings) and scrape_interval and
// scrape_timeout.
type Poller struct {
	Discovery *discovery.Discovery
	Poller    *poller.Poller
	// Targets returns cfg's static targets as the poller scrapes them:
	// config.Targets with the self-scrape target's scheme resolved.
	Targets func(cfg *config.Config) ([]config.Target, error)
}

// Apply implements Applier. The targets go first since they are what can
// be refused (an HTTP client that cannot be built); the schedule's only
// refusal, a scrape_interval that is not positive, is Validate's before
// Apply is called, so it cannot fail after them.
func (a Poller) Apply(_ context.Context, cfg *config.Config) ([]any, error) {
	static, err := a.Targets(cfg)
	if err != nil {
		return nil, err
	}
	ch, err := a.Discovery.Apply(cfg, static)
	if err != nil {
		return nil, err
	}
	rescheduled, err := a.Poller.SetSchedule(time.Duration(cfg.ScrapeInterval), time.Duration(cfg.ScrapeTimeout))
	if err != nil {
		return nil, fmt.Errorf("scrape_interval: %w", err)
	}
	return []any{
		"added", ch.Added, "removed", ch.Removed, "changed", ch.Changed, "unchanged", ch.Unchanged,
		"schedule_changed", rescheduled, "scrape_interval", cfg.ScrapeInterval, "scrape_timeout", cfg.ScrapeTimeout,
	}, nil
}

// Receiver applies what a receiver takes live: publishers and max_age,
// push_gateway's down_after and delete_after (with the Pushgateway output)
// and serve.delete_after (with the serving output).
type Receiver struct {
	Receiver *receiver.Receiver
	// Push and Serve are the outputs the receiver runs; nil when it does
	// not.
	Push  *push.Output
	Serve *serve.Output
}

// Apply implements Applier. Validate ensured that the file keeps the
// sections of the outputs running (a removed one is a restart key).
func (a Receiver) Apply(_ context.Context, cfg *config.Config) ([]any, error) {
	maxAge := time.Duration(cfg.MaxAge)
	// The setters refuse only these, which Validate refuses before: checked
	// here too so that a refusal can never leave a reload half applied.
	if maxAge <= 0 {
		return nil, fmt.Errorf("max_age %s is not positive", cfg.MaxAge)
	}
	if pg := cfg.PushGateway; pg != nil && pg.DeleteAfter < 0 {
		return nil, fmt.Errorf("push_gateway.delete_after %s is negative", pg.DeleteAfter)
	}
	if err := a.Receiver.SetLive(receiver.Live{MaxAge: maxAge, Publishers: cfg.Publishers}); err != nil {
		return nil, err
	}
	applied := []any{"max_age", cfg.MaxAge, "publishers", len(cfg.Publishers)}
	if a.Push != nil && cfg.PushGateway != nil {
		pg := cfg.PushGateway
		if err := a.Push.SetLive(push.Live{
			MaxAge:      maxAge,
			DownAfter:   time.Duration(pg.DownAfter),
			DeleteAfter: time.Duration(pg.DeleteAfter),
		}); err != nil {
			return nil, err
		}
		applied = append(applied, "down_after", pg.DownAfter, "delete_after", pg.DeleteAfter)
	}
	if a.Serve != nil && cfg.Serve != nil {
		if err := a.Serve.SetLive(serve.Live{MaxAge: maxAge, DeleteAfter: time.Duration(cfg.Serve.DeleteAfter)}); err != nil {
			return nil, err
		}
		applied = append(applied, "serve_delete_after", cfg.Serve.DeleteAfter)
	}
	return applied, nil
}
