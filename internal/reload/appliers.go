package reload

import (
	"context"
	"fmt"
	"time"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/discovery"
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

// Receiver applies what a receiver takes live: publishers, max_age and
// push_gateway's down_after and delete_after.
type Receiver struct {
	Receiver *receiver.Receiver
}

// Apply implements Applier.
func (a Receiver) Apply(_ context.Context, cfg *config.Config) ([]any, error) {
	pg := cfg.PushGateway // Validate ensured it
	if err := a.Receiver.SetLive(receiver.Live{
		MaxAge:      time.Duration(cfg.MaxAge),
		DownAfter:   time.Duration(pg.DownAfter),
		DeleteAfter: time.Duration(pg.DeleteAfter),
		Publishers:  cfg.Publishers,
	}); err != nil {
		return nil, err
	}
	return []any{"max_age", cfg.MaxAge, "down_after", pg.DownAfter, "delete_after", pg.DeleteAfter, "publishers", len(cfg.Publishers)}, nil
}
