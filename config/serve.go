package config

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultServeConfig holds the defaults of serve, which are what a receiver
// with serve_targets: true and no serve section uses. UnmarshalYAML copies
// it; it is never modified.
var DefaultServeConfig = ServeConfig{
	PublisherLabel:       true,
	PublisherLabelName:   DefaultPublisherLabelName,
	DeleteAfter:          Duration(DefaultServeDeleteAfter),
	MaxGroups:            DefaultServeMaxGroups,
	MaxBytes:             DefaultServeMaxBytes,
	MaxConcurrentScrapes: DefaultServeMaxConcurrentScrapes,
	WriteTimeout:         Duration(DefaultServeWriteTimeout),
}

// ServeConfig is how the receiver serves targets (serve_targets: true): it
// keeps each group's newest scrape and serves each group to Prometheus as a
// scrape target of its own, which Prometheus finds through HTTP service
// discovery at GET /sd on the monitor endpoint.
type ServeConfig struct {
	// Address is the host:port written into /sd as every target's
	// __address__, for receivers behind a load balancer or a NAT; "" uses
	// the Host of the request to /sd, which is where Prometheus reached
	// this receiver.
	Address string `yaml:"address,omitempty"`
	// Scheme is written into /sd as every target's __scheme__: "http" or
	// "https". "" (the default) is the monitor endpoint's own: https when
	// monitor_web_config serves TLS. Set it for a load balancer that
	// terminates or adds TLS in front of the receiver.
	Scheme string `yaml:"scheme,omitempty"`
	// PublisherLabel adds the publishing poller's identity to every /sd
	// target under PublisherLabelName. It defaults to true, unlike
	// push_gateway's: two DCs may well have the same job and instance, and
	// without it their targets would collide in Prometheus.
	PublisherLabel bool `yaml:"publisher_label"` // no omitempty: false must survive a round trip
	// PublisherLabelName is the label PublisherLabel uses.
	PublisherLabelName string `yaml:"publisher_label_name"`
	// DeleteAfter is how long a group may go without a new scrape before it
	// leaves /sd, upon which Prometheus writes staleness markers for its
	// series. It is at least max_age: a scrape younger than max_age is
	// still current. Left unset, it is 1h, or max_age when that is longer.
	// A reload applies it live.
	DeleteAfter Duration `yaml:"delete_after"`
	// MaxGroups bounds the groups held; scrapes of further groups are
	// refused and counted.
	MaxGroups int `yaml:"max_groups"`
	// MaxBytes bounds the compressed scrape bodies held, all groups
	// together; a scrape that does not fit is refused and counted.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxConcurrentScrapes bounds the scrape requests served at once;
	// further ones get 503 Service Unavailable.
	MaxConcurrentScrapes int `yaml:"max_concurrent_scrapes"`
	// WriteTimeout bounds writing one scrape's body, so that a slow or
	// stalled reader cannot hold a concurrency slot forever.
	WriteTimeout Duration `yaml:"write_timeout"`
}

// UnmarshalYAML decodes the section over a copy of DefaultServeConfig.
func (s *ServeConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*s = DefaultServeConfig
	type plain ServeConfig
	return unmarshal((*plain)(s))
}

// finishServe fills serve with its defaults when serve_targets is true and
// the section is absent, so that callers read c.Serve without a nil check,
// and checks the section against serve_targets and max_age. It runs after
// checkGlobals, which derives max_age.
func (c *Config) finishServe(k *checker) {
	if c.Serve != nil && !c.ServeTargets {
		k.errorf(keyPath{"serve"}, "set serve_targets: true to serve targets, or remove the section")
		return
	}
	if !c.ServeTargets {
		return
	}
	if c.Serve == nil {
		s := DefaultServeConfig
		c.Serve = &s
	}
	p := keyPath{"serve"}
	c.Serve.check(k, p)
	// The default must not need an edit when max_age is long (a long
	// scrape_interval): a group would otherwise leave /sd while its scrape
	// is still current.
	switch d := c.Serve.DeleteAfter; {
	case !k.explicit(p.with("delete_after")):
		c.Serve.DeleteAfter = Duration(DerivedServeDeleteAfter(time.Duration(c.MaxAge)))
	case d < c.MaxAge:
		k.errorf(p.with("delete_after"), "%s is shorter than max_age %s", d, c.MaxAge)
	}
}

func (s *ServeConfig) check(k *checker, p keyPath) {
	if s.Address != "" {
		if err := checkHostPort(s.Address); err != nil {
			k.errorf(p.with("address"), "%w", err)
		}
	}
	if s.Scheme != "" && s.Scheme != "http" && s.Scheme != "https" {
		k.errorf(p.with("scheme"), "%q is neither http nor https", s.Scheme)
	}
	checkPublisherLabelName(k, p.with("publisher_label_name"), s.PublisherLabelName)
	if s.MaxGroups < 1 {
		k.errorf(p.with("max_groups"), "must be greater than 0")
	}
	if s.MaxBytes <= 0 {
		k.errorf(p.with("max_bytes"), "must be greater than 0")
	}
	if s.MaxConcurrentScrapes < 1 {
		k.errorf(p.with("max_concurrent_scrapes"), "must be greater than 0")
	}
	if s.WriteTimeout <= 0 {
		k.errorf(p.with("write_timeout"), "must be greater than 0")
	}
}

// checkHostPort accepts host:port with both parts present, as Prometheus
// needs in a target's __address__.
func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// net.AddrError repeats the address; keep only its reason.
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("%q is not host:port: %s", a, ae.Err)
		}
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("%q is not host:port: both the host and the port are required", a)
	}
	return nil
}
