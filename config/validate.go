package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// checker collects the errors and warnings of one pass over a Config, each
// placed at the line of the nearest enclosing key present in the file.
type checker struct {
	c        *Config
	errs     []error
	warnings []string
}

func (k *checker) errorf(p keyPath, format string, args ...any) {
	line, _ := find(k.c.node, p)
	k.errs = append(k.errs, posErrorf(k.c.filename, line, p, format, args...))
}

func (k *checker) warnf(p keyPath, format string, args ...any) {
	line, _ := find(k.c.node, p)
	k.warnings = append(k.warnings, posErrorf(k.c.filename, line, p, format, args...).Error())
}

// explicit reports whether the file sets p to a non-null value, which tells
// "left at the default" from "set to the zero value".
func (k *checker) explicit(p keyPath) bool {
	_, v := find(k.c.node, p)
	return !isNull(v)
}

// finish applies the defaults that depend on other values and checks every
// value present. It runs once, inside Parse.
func (c *Config) finish() error {
	k := &checker{c: c}
	if c.Identity == "" {
		host, err := os.Hostname()
		switch {
		case err != nil:
			k.errorf(keyPath{"identity"}, "not set, and the hostname is unknown: %w", err)
		case host == "":
			k.errorf(keyPath{"identity"}, "not set, and the hostname is empty")
		}
		c.Identity = host
	}
	c.checkGlobals(k)
	c.checkMonitorWeb(k)
	for _, role := range []Role{RolePoller, RoleReceiver} {
		if s := c.Stream(role); s != nil {
			s.check(k, keyPath{streamKey(role)}, c.Identity)
		}
	}
	if c.PushGateway != nil {
		c.PushGateway.check(k, keyPath{"push_gateway"})
		if c.PushGateway.DownAfter == 0 {
			c.PushGateway.DownAfter = Duration(DerivedDownAfter(time.Duration(c.MaxAge)))
		}
		if d := c.PushGateway.DeleteAfter; d != 0 && d < c.PushGateway.DownAfter {
			k.errorf(keyPath{"push_gateway", "delete_after"}, "%s is shorter than down_after %s", d, c.PushGateway.DownAfter)
		}
	}
	c.finishServe(k)
	c.checkPublishers(k)
	if c.TLS != nil {
		c.TLS.check(k, keyPath{"tls"}, c.Identity)
	}
	if c.Management != nil {
		k.warnf(keyPath{"management"}, "the Choria management backplane of 1.0 is not supported; the section is ignored")
	}
	c.checkJobs(k)
	c.Warnings = k.warnings
	return errors.Join(k.errs...)
}

// checkGlobals checks the top-level scalars and derives scrape_timeout and
// max_age from scrape_interval.
func (c *Config) checkGlobals(k *checker) {
	if !utf8.ValidString(c.Identity) {
		k.errorf(keyPath{"identity"}, "must be valid UTF-8")
	}
	if c.LogFormat != LogFormatText && c.LogFormat != LogFormatJSON {
		k.errorf(keyPath{"log_format"}, "must be %q or %q, not %q", LogFormatText, LogFormatJSON, c.LogFormat)
	}
	if c.Compression != CompressionSnappy && c.Compression != CompressionZstd {
		k.errorf(keyPath{"compression"}, "must be %q or %q, not %q", CompressionSnappy, CompressionZstd, c.Compression)
	}
	interval := time.Duration(c.ScrapeInterval)
	if interval <= 0 {
		k.errorf(keyPath{"scrape_interval"}, "must be greater than 0")
	}
	switch {
	case !k.explicit(keyPath{"scrape_timeout"}):
		c.ScrapeTimeout = Duration(DerivedScrapeTimeout(interval))
	case c.ScrapeTimeout <= 0:
		k.errorf(keyPath{"scrape_timeout"}, "must be greater than 0")
	case interval > 0 && time.Duration(c.ScrapeTimeout) > interval:
		k.errorf(keyPath{"scrape_timeout"}, "%s must not exceed scrape_interval %s", c.ScrapeTimeout, c.ScrapeInterval)
	}
	if c.MaxAge == 0 {
		// 1.0 read max_age 0 (or none) as "no limit"; a stale scrape is now
		// always dropped, so 0 takes the default rather than failing a 1.0 file.
		if k.explicit(keyPath{"max_age"}) {
			k.warnf(keyPath{"max_age"}, "0 meant no age limit in 1.0; using the default of twice scrape_interval (%s)", Duration(DerivedMaxAge(interval)))
		}
		c.MaxAge = Duration(DerivedMaxAge(interval))
	}
	if c.MonitorPort < 0 || c.MonitorPort > 65535 {
		k.errorf(keyPath{"monitor_port"}, "must be between 0 (off) and 65535, not %d", c.MonitorPort)
	}
	if err := checkListenHost(c.MonitorListen); err != nil {
		k.errorf(keyPath{"monitor_listen"}, "%w", err)
	}
	if c.MonitorPprof && c.MonitorPort <= 0 {
		k.warnf(keyPath{"monitor_pprof"}, "ignored: monitor_port is 0, so there is no monitor endpoint")
	}
	if c.BodySizeLimit <= 0 {
		k.errorf(keyPath{"body_size_limit"}, "must be greater than 0")
	}
}

// checkListenHost accepts a host name or IP address (IPv6 optionally in
// brackets) without a port, which is monitor_port's job.
func checkListenHost(h string) error {
	if h == "" {
		return nil
	}
	if strings.ContainsAny(h, " \t/@") {
		return fmt.Errorf("%q is not a host name or IP address", h)
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Errorf("%q has a port; give only the host, the port is monitor_port", h)
	}
	return nil
}

// bareHost strips the brackets of an IPv6 literal.
func bareHost(h string) string {
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// Validate checks that the configuration has what role needs: for the
// poller, poller_stream with cluster_id, urls and topic, and at least one
// target (the self-scrape job counts) or a job with file_sd_configs; for the receiver, receiver_stream
// with the same keys, and push_gateway with its url or serve_targets: true
// (or both), serving needing monitor_port. Values were checked by Parse.
// Every problem is reported, joined, each naming the key and the line of
// the nearest enclosing key present; a section missing entirely has no line.
func (c *Config) Validate(role Role) error {
	k := &checker{c: c}
	switch role {
	case RolePoller:
		c.validateStream(k, role)
		// A job with file_sd_configs may have no targets yet: its files
		// can be filled after the poller starts.
		if len(c.Targets()) == 0 && !c.HasFileSD() {
			k.errorf(keyPath{"jobs"}, "at least one target or file_sd_configs is required for the poller (or set monitor_port to scrape this process)")
		}
	case RoleReceiver:
		c.validateStream(k, role)
		c.validateOutputs(k)
	default:
		return fmt.Errorf("%s: unknown role %q (want %q or %q)", location(c.filename, 0), role, RolePoller, RoleReceiver)
	}
	return errors.Join(k.errs...)
}

// validateOutputs checks that the receiver has somewhere to send scrapes:
// push_gateway, serve_targets, or both.
func (c *Config) validateOutputs(k *checker) {
	switch {
	case c.PushGateway == nil && !c.ServeTargets:
		k.errorf(keyPath{"push_gateway"}, "required for the receiver, or serve_targets: true")
	case c.PushGateway != nil && c.PushGateway.URL == "":
		k.errorf(keyPath{"push_gateway", "url"}, "required for the receiver")
	}
	// Checked here rather than by Parse: a poller reading the same file
	// does not serve, and needs no monitor endpoint for it.
	if c.ServeTargets && c.MonitorPort <= 0 {
		k.errorf(keyPath{"serve_targets"}, "requires monitor_port: the targets and /sd are served on the monitor endpoint")
	}
}

func (c *Config) validateStream(k *checker, role Role) {
	key := streamKey(role)
	s := c.Stream(role)
	if s == nil {
		k.errorf(keyPath{key}, "required for the %s", role)
		return
	}
	if s.ClusterID == "" && s.Stream == "" {
		k.errorf(keyPath{key, "stream"}, "required for the %s: a JetStream stream (or cluster_id for NATS Streaming)", role)
	}
	if len(s.URLs) == 0 {
		k.errorf(keyPath{key, "urls"}, "required for the %s", role)
	}
	if s.Topic == "" && !s.JetStream() {
		k.errorf(keyPath{key, "topic"}, "required for the %s", role)
	}
}

// checkPublishers checks the receiver's allow-list: publisher identities and
// job names are label values, so they must be valid UTF-8 and not empty.
func (c *Config) checkPublishers(k *checker) {
	for pub, jobs := range c.Publishers {
		p := keyPath{"publishers", pub}
		if pub == "" || !utf8.ValidString(pub) {
			k.errorf(p, "a publisher must be a non-empty UTF-8 identity")
		}
		for i, j := range jobs {
			if j == "" || !utf8.ValidString(j) {
				k.errorf(p.with(i), "a job must be a non-empty UTF-8 name")
			}
		}
	}
}
