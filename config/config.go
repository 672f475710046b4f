// Package config reads the prometheus-streams YAML file: the keys of 1.0
// unchanged plus new optional ones, their defaults, and validation whose
// errors name the file, line and key.
//
// Parse checks the syntax, types and values of what the file contains;
// Validate then checks that a role (poller or receiver) has what it needs.
// A *Config is not modified after Parse and is safe for concurrent reads.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Role is what a process does with the configuration.
type Role string

const (
	// RolePoller scrapes the jobs' targets and publishes to poller_stream.
	RolePoller Role = "poller"
	// RoleReceiver consumes receiver_stream and pushes the scrapes to
	// push_gateway, serves them as scrape targets (serve_targets), or both.
	RoleReceiver Role = "receiver"
)

// Log formats accepted by log_format.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Codecs accepted by compression: how the poller compresses scrape bodies.
const (
	CompressionSnappy = "snappy"
	CompressionZstd   = "zstd"
)

// SelfScrapeJob is the job that monitor_port adds so the poller publishes
// its own /metrics, as 1.0 did.
const SelfScrapeJob = "prometheus_streams"

// DefaultConfig holds the top-level defaults. UnmarshalYAML copies it; it is
// never modified. scrape_timeout and max_age default from scrape_interval
// after decoding, identity from the hostname.
var DefaultConfig = Config{
	LogFormat:      LogFormatText,
	Compression:    CompressionSnappy,
	ScrapeInterval: Duration(60 * time.Second),
	BodySizeLimit:  DefaultBodySizeLimit,
}

// Config is the whole file. Sections that are absent are nil.
type Config struct {
	// Identity names this process: the publisher of its scrapes, the
	// self-scrape target and part of the default client ids. Default: the
	// hostname.
	Identity string `yaml:"identity,omitempty"`
	// Verbose and Debug raise the log level (1.0 keys).
	Verbose bool `yaml:"verbose,omitempty"`
	Debug   bool `yaml:"debug,omitempty"`
	// LogFile is the file to log to; "" means stderr.
	LogFile string `yaml:"logfile,omitempty"`
	// LogFormat is LogFormatText or LogFormatJSON.
	LogFormat string `yaml:"log_format"`
	// ScrapeInterval is how often the poller scrapes every target.
	ScrapeInterval Duration `yaml:"scrape_interval"`
	// ScrapeTimeout bounds one scrape; at most ScrapeInterval.
	ScrapeTimeout Duration `yaml:"scrape_timeout"`
	// MaxAge is the age beyond which the receiver drops a scrape.
	MaxAge Duration `yaml:"max_age"`
	// MonitorPort serves /metrics when > 0 and adds SelfScrapeJob.
	MonitorPort int `yaml:"monitor_port,omitempty"`
	// MonitorListen is the host to bind MonitorPort on; "" means all interfaces.
	MonitorListen string `yaml:"monitor_listen,omitempty"`
	// MonitorWebConfig is the path of an exporter-toolkit web configuration
	// file (TLS, basic auth) for the monitor endpoint, relative to this
	// file's directory; "" serves plain HTTP without authentication.
	MonitorWebConfig string `yaml:"monitor_web_config,omitempty"`
	// MonitorPprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the monitor endpoint, behind MonitorWebConfig like
	// /metrics. Off by default: profiles expose internals and cost CPU
	// while they are taken.
	MonitorPprof bool `yaml:"monitor_pprof,omitempty"`
	// BodySizeLimit caps a scrape body read by the poller and a body
	// inflated by the receiver.
	BodySizeLimit ByteSize `yaml:"body_size_limit"`
	// Compression is the codec the poller compresses bodies with,
	// CompressionSnappy or CompressionZstd. Receivers read both.
	Compression string `yaml:"compression"`

	PollerStream   *StreamConfig `yaml:"poller_stream,omitempty"`
	ReceiverStream *StreamConfig `yaml:"receiver_stream,omitempty"`
	// PushGateway is where the receiver pushes; absent, it does not push
	// (it must then serve targets).
	PushGateway *PushGatewayConfig `yaml:"push_gateway,omitempty"`
	// ServeTargets makes the receiver keep each group's newest scrape and
	// serve every group to Prometheus as a scrape target, listed for HTTP
	// service discovery at /sd on the monitor endpoint. A receiver pushes
	// (PushGateway), serves, or both.
	ServeTargets bool `yaml:"serve_targets,omitempty"`
	// Serve holds the settings of ServeTargets. Parse sets it to a copy of
	// DefaultServeConfig when ServeTargets is true and the section is
	// absent, so it is non-nil exactly when ServeTargets is true.
	Serve *ServeConfig `yaml:"serve,omitempty"`
	// Management is 1.0's Choria management backplane: accepted, ignored.
	Management *ManagementConfig `yaml:"management,omitempty"`
	// Jobs maps a job name to the targets scraped under it.
	Jobs map[string]Job `yaml:"jobs,omitempty"`
	// TLS applies to every stream section without a tls of its own.
	TLS *TLSConfig `yaml:"tls,omitempty"`
	// Publishers, when set, is the receiver's allow-list: the publisher
	// identities it accepts scrapes from, each with the jobs it may write
	// (an empty list: any job). Absent: every publisher is accepted.
	Publishers map[string][]string `yaml:"publishers,omitempty"`

	// Warnings lists what the file sets that is accepted but not supported,
	// one line each, for the caller to log.
	Warnings []string `yaml:"-"`

	filename string
	node     *yaml.Node // the document's root mapping, for line numbers
}

// ManagementConfig is 1.0's management section (the Choria backplane). It
// is decoded so that its keys are still checked, and otherwise ignored.
type ManagementConfig struct {
	// Identity through TLS are 1.0's backplane settings, kept only so that
	// a 1.0 file still parses and its keys are still checked.
	Identity   string     `yaml:"identity,omitempty"`
	Collective string     `yaml:"collective,omitempty"`
	Name       string     `yaml:"name,omitempty"`
	Brokers    []string   `yaml:"brokers,omitempty"`
	LogFile    string     `yaml:"logfile,omitempty"`
	LogLevel   string     `yaml:"loglevel,omitempty"`
	TLS        *TLSConfig `yaml:"tls,omitempty"`
	// Auth was free-form in 1.0; anything is accepted.
	Auth any `yaml:"auth,omitempty"`
}

// UnmarshalYAML decodes the file over a copy of DefaultConfig. Every
// section takes this func form, as Prometheus's config does: yaml.v3 runs
// it within the same decoder, so Parse's KnownFields(true) reaches every
// key, where the *yaml.Node form decodes with a fresh decoder that lets
// unknown keys pass.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig
	type plain Config
	return unmarshal((*plain)(c))
}

// Load reads and parses the file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already the prefix
		}
		return nil, fmt.Errorf("%s: read configuration: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes data, applies defaults and checks every value present.
// filename prefixes messages, and its directory is what the relative paths
// of monitor_web_config and of the HTTP client settings (ca_file,
// password_file...) are resolved against. Unknown and duplicate keys, wrong types,
// bad values and an empty file are errors of the form
// "filename:line: key.path: message". It does not check what a role needs;
// call Validate for that.
func Parse(data []byte, filename string) (*Config, error) {
	root, err := parseDocument(data, filename)
	if err != nil {
		return nil, err
	}
	// The bytes are decoded again because a yaml.Node decodes without
	// KnownFields, and nothing sets it there.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		return nil, decodeError(filename, root, err)
	}
	c.filename, c.node = filename, root
	if err := c.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseDocument returns the root mapping of the single YAML document in data.
func parseDocument(data []byte, filename string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty configuration", location(filename, 0))
		}
		return nil, syntaxError(filename, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("%s: only one YAML document is allowed", location(filename, extra.Line))
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(filename, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, fmt.Errorf("%s: empty configuration", location(filename, 0))
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: the configuration must be a mapping of keys, not %s", location(filename, root.Line), describe(root))
	}
	return root, nil
}

// Roles reports which roles the file has sections for: the poller when it
// has poller_stream or jobs, the receiver when it has receiver_stream,
// push_gateway or serve_targets: true. check-config validates each; a file
// with jobs but no poller_stream is thereby reported instead of silently
// ignored.
func (c *Config) Roles() []Role {
	var roles []Role
	if c.PollerStream != nil || len(c.Jobs) > 0 {
		roles = append(roles, RolePoller)
	}
	if c.ReceiverStream != nil || c.PushGateway != nil || c.ServeTargets {
		roles = append(roles, RoleReceiver)
	}
	return roles
}

// Stream returns the stream section role uses (poller_stream or
// receiver_stream), or nil when it is absent or role is unknown.
func (c *Config) Stream(role Role) *StreamConfig {
	switch role {
	case RolePoller:
		return c.PollerStream
	case RoleReceiver:
		return c.ReceiverStream
	}
	return nil
}

// streamKey is the YAML key of role's stream section.
func streamKey(role Role) string {
	return string(role) + "_stream"
}

// StreamTLS returns the TLS settings for role's stream: the section's own
// tls, else the global tls, else nil (plain connections).
func (c *Config) StreamTLS(role Role) *TLSConfig {
	if s := c.Stream(role); s != nil && s.TLS != nil {
		return s.TLS
	}
	return c.TLS
}

// ClientID returns the NATS Streaming client id for role: the stream
// section's client_id when set, else "prometheus_streams_<role>_<identity>"
// with every rune NATS Streaming refuses (outside [a-zA-Z0-9_-]) replaced by
// "_". The default is stable across restarts on purpose: 1.0 generated a
// random id, so a restarted receiver lost its durable subscription and the
// messages queued for it.
func (c *Config) ClientID(role Role) string {
	if s := c.Stream(role); s != nil && s.ClientID != "" {
		return s.ClientID
	}
	return sanitizeClientID("prometheus_streams_" + string(role) + "_" + c.Identity)
}

// MonitorAddress is the address to serve /metrics on ("host:port", ":port"
// for all interfaces), or "" when monitor_port is 0.
func (c *Config) MonitorAddress() string {
	if c.MonitorPort <= 0 {
		return ""
	}
	return net.JoinHostPort(bareHost(c.MonitorListen), fmt.Sprint(c.MonitorPort))
}
