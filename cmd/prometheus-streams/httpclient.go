package main

import (
	"fmt"
	"net/http"
	"strings"

	commoncfg "github.com/prometheus/common/config"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/monitor"
)

// pushgatewayHTTPClient builds the Pushgateway's client from push_gateway's
// HTTP client settings. It sets no overall timeout: the receiver bounds
// each push with push_gateway.timeout through its context, and listing the
// Pushgateway's groups (its whole /metrics) needs longer.
func pushgatewayHTTPClient(pg *config.PushGatewayConfig) (*http.Client, error) {
	c, err := commoncfg.NewClientFromConfig(pg.HTTPClientConfig, "pushgateway")
	if err != nil {
		return nil, fmt.Errorf("push_gateway: %w", err)
	}
	return c, nil
}

// selfScrapeScheme returns targets with the self-scrape target that
// monitor_port adds switched to https when monitor_web_config serves TLS;
// its credentials and CA come from a job named config.SelfScrapeJob.
func selfScrapeScheme(cfg *config.Config, targets []config.Target) ([]config.Target, error) {
	if cfg.MonitorPort <= 0 || cfg.MonitorWebConfig == "" {
		return targets, nil
	}
	scheme, err := monitor.Scheme(cfg.MonitorWebConfig)
	if err != nil || scheme == "http" {
		return targets, err
	}
	for i, t := range targets {
		if t.Job == config.SelfScrapeJob && t.Name == cfg.Identity {
			targets[i].URL = scheme + strings.TrimPrefix(t.URL, "http")
		}
	}
	return targets, nil
}
