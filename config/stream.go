package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// DefaultStreamConfig holds the defaults of poller_stream and
// receiver_stream. UnmarshalYAML copies it; it is never modified.
var DefaultStreamConfig = StreamConfig{
	MaxInflight:    DefaultMaxInflight,
	AckWait:        Duration(DefaultAckWait),
	ConnectTimeout: Duration(DefaultConnectTimeout),
	Replicas:       1,
	Storage:        StorageFile,
	Consumer:       DefaultConsumer,
	PinnedTTL:      Duration(DefaultPinnedTTL),
}

// JetStream storage types accepted by storage.
const (
	StorageFile   = "file"
	StorageMemory = "memory"
)

// DefaultJetStreamTopic is the subject prefix of a JetStream section
// without topic.
const DefaultJetStreamTopic = "prometheus"

// natsName is what JetStream accepts as a stream or consumer name.
var natsName = regexp.MustCompile(`^[^.*>/\\\s]+$`)

// StreamConfig is a stream connection: poller_stream (publish) or
// receiver_stream (durable subscribe). With stream (and no cluster_id) it
// is JetStream; with cluster_id, NATS Streaming as in 1.0.
type StreamConfig struct {
	// ClientID is the NATS Streaming client id; see Config.ClientID for
	// the default.
	ClientID string `yaml:"client_id,omitempty"`
	// ClusterID is the NATS Streaming cluster to connect to.
	ClusterID string `yaml:"cluster_id,omitempty"`
	// URLs are the NATS servers, each nats://host:port or tls://host:port.
	URLs URLList `yaml:"urls,omitempty"`
	// Topic is the channel scrapes are published to and consumed from.
	Topic string `yaml:"topic,omitempty"`
	// TLS overrides the global tls for this stream.
	TLS *TLSConfig `yaml:"tls,omitempty"`
	// MaxInflight bounds unacknowledged publishes (poller) or
	// unacknowledged deliveries (receiver).
	MaxInflight int `yaml:"max_inflight"`
	// AckWait is the publish-ack timeout (poller) or the redelivery
	// timeout (receiver).
	AckWait Duration `yaml:"ack_wait"`
	// ConnectTimeout bounds connecting to NATS.
	ConnectTimeout Duration `yaml:"connect_timeout"`

	// JetStream's keys; they apply only with Stream.

	// Stream is the JetStream stream scrapes are stored in.
	Stream string `yaml:"stream,omitempty"`
	// Domain is the JetStream domain whose API serves the stream, "" for
	// the one the connection is in (a leaf node's pollers name the
	// central domain).
	Domain string `yaml:"domain,omitempty"`
	// CreateStream lets the poller create the stream when it is missing;
	// false for accounts that may not create streams. Default true.
	CreateStream *bool `yaml:"create_stream,omitempty"`
	// Replicas, Storage and MaxBytes are the settings the poller creates
	// the stream with; its max_age is the top-level max_age.
	Replicas int      `yaml:"replicas"`
	Storage  string   `yaml:"storage"`
	MaxBytes ByteSize `yaml:"max_bytes,omitempty"`
	// Consumer is the durable consumer the receivers of one configuration
	// share for the Pushgateway output.
	Consumer string `yaml:"consumer"`
	// PinnedTTL is how long a silent active receiver keeps the consumer
	// before a standby takes over.
	PinnedTTL Duration `yaml:"pinned_ttl"`

	// At most one way of authenticating to NATS may be set: Credentials,
	// NKey, User (with Password) or Token. The files are read when
	// connecting, not when the file is checked, so that they may be
	// provisioned after the configuration.

	// Credentials is the path of a NATS .creds file (user JWT and nkey seed).
	Credentials string `yaml:"credentials,omitempty"`
	// NKey is the path of a file holding an nkey user seed.
	NKey string `yaml:"nkey,omitempty"`
	// User and Password authenticate with a user name; Password needs User.
	User     string `yaml:"user,omitempty"`
	Password string `yaml:"password,omitempty"`
	// Token authenticates with a token.
	Token string `yaml:"token,omitempty"`
}

// UnmarshalYAML decodes the section over a copy of DefaultStreamConfig.
func (s *StreamConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*s = DefaultStreamConfig
	type plain StreamConfig
	return unmarshal((*plain)(s))
}

// clientIDPattern is what NATS Streaming accepts as a client id.
var clientIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// sanitizeClientID replaces every rune NATS Streaming refuses with "_".
func sanitizeClientID(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// JetStream reports whether the section uses JetStream (stream is set).
func (s *StreamConfig) JetStream() bool { return s.Stream != "" }

// Subject is the subject prefix: topic, or DefaultJetStreamTopic.
func (s *StreamConfig) Subject() string {
	if s.Topic == "" {
		return DefaultJetStreamTopic
	}
	return s.Topic
}

// Creates reports whether the poller creates a missing stream.
func (s *StreamConfig) Creates() bool { return s.CreateStream == nil || *s.CreateStream }

func (s *StreamConfig) check(k *checker, p keyPath, identity string) {
	if s.Stream != "" && s.ClusterID != "" {
		k.errorf(p.with("stream"), "conflicts with cluster_id: stream uses JetStream, cluster_id NATS Streaming; set one")
	}
	if s.Stream != "" && !natsName.MatchString(s.Stream) {
		k.errorf(p.with("stream"), "%q is no JetStream name (no white space, ., *, >, / or \\)", s.Stream)
	}
	if !natsName.MatchString(s.Consumer) {
		k.errorf(p.with("consumer"), "%q is no JetStream name (no white space, ., *, >, / or \\)", s.Consumer)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		k.errorf(p.with("replicas"), "must be 1 to 5")
	}
	if s.Storage != StorageFile && s.Storage != StorageMemory {
		k.errorf(p.with("storage"), "%q is not %q or %q", s.Storage, StorageFile, StorageMemory)
	}
	if s.MaxBytes < 0 {
		k.errorf(p.with("max_bytes"), "must not be negative")
	}
	if time.Duration(s.PinnedTTL) < MinPinnedTTL {
		k.errorf(p.with("pinned_ttl"), "must be at least %s (the active receiver pulls every half of it, and 1s is the shortest pull)", Duration(MinPinnedTTL))
	}
	if s.ClientID != "" && !clientIDPattern.MatchString(s.ClientID) {
		k.errorf(p.with("client_id"), "%q may contain only letters, digits, _ and -", s.ClientID)
	}
	if s.Topic != "" {
		if err := checkTopic(s.Topic); err != nil {
			k.errorf(p.with("topic"), "%w", err)
		}
	}
	if s.MaxInflight < 1 {
		k.errorf(p.with("max_inflight"), "must be at least 1")
	}
	if time.Duration(s.AckWait) < MinAckWait {
		k.errorf(p.with("ack_wait"), "must be at least %s", Duration(MinAckWait))
	}
	if s.ConnectTimeout <= 0 {
		k.errorf(p.with("connect_timeout"), "must be greater than 0")
	}
	if s.TLS != nil {
		s.TLS.check(k, p.with("tls"), identity)
	}
	s.checkAuth(k, p)
}

// checkAuth allows at most one NATS authentication method. Only the values
// are checked: the files named are read at connect time.
func (s *StreamConfig) checkAuth(k *checker, p keyPath) {
	keys := []struct{ key, v string }{
		{"credentials", s.Credentials},
		{"nkey", s.NKey},
		{"user", s.User},
		{"password", s.Password},
		{"token", s.Token},
	}
	for _, f := range keys {
		// An empty value set on purpose is most likely a template that
		// failed to fill it in; leaving the key out is how to not use it.
		if f.v == "" && k.explicit(p.with(f.key)) {
			k.errorf(p.with(f.key), "must not be empty (leave the key out to not use it)")
		}
	}
	if s.Password != "" && s.User == "" {
		k.errorf(p.with("password"), "requires user")
	}
	// password goes with user, so it is no method of its own.
	first := ""
	for _, f := range keys {
		if f.v == "" || f.key == "password" {
			continue
		}
		if first == "" {
			first = f.key
			continue
		}
		other := first
		if line, _ := find(k.c.node, p.with(first)); line > 0 {
			other = fmt.Sprintf("%s (line %d)", first, line)
		}
		k.errorf(p.with(f.key), "conflicts with %s: set only one of credentials, nkey, user (with password) and token", other)
	}
}

// checkTopic accepts a literal NATS subject: dot-separated non-empty tokens
// without wildcards or white space.
func checkTopic(t string) error {
	if strings.ContainsAny(t, " \t\r\n*>") {
		return fmt.Errorf("%q must not contain white space or the wildcards * and >", t)
	}
	for _, tok := range strings.Split(t, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token (leading, trailing or double dot)", t)
		}
	}
	return nil
}

// URLList is a list of NATS server URLs. YAML may give one string of
// comma-separated URLs (as 1.0 required) or a list; entries are trimmed,
// empty ones dropped, and a bare host:port gets nats:// prefixed. Each must
// use the scheme nats or tls and name a host.
type URLList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *URLList) UnmarshalYAML(value *yaml.Node) error {
	var entries []*yaml.Node
	switch value.Kind {
	case yaml.ScalarNode:
		entries = []*yaml.Node{value}
	case yaml.SequenceNode:
		for _, item := range value.Content {
			item = resolve(item)
			if item == nil || item.Kind != yaml.ScalarNode {
				return errors.New("each entry must be a URL string")
			}
			entries = append(entries, item)
		}
	default:
		return errors.New("must be a comma-separated string of URLs or a list of URLs")
	}
	out := URLList{}
	for _, e := range entries {
		if isNull(e) {
			continue
		}
		for _, part := range strings.Split(e.Value, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			u, err := normalizeNATSURL(part)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
	}
	*l = out
	return nil
}

func normalizeNATSURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid NATS URL: %w", err)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return "", fmt.Errorf("NATS URL %q: scheme must be nats or tls, not %q", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("NATS URL %q has no host", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("NATS URL %q must not have a path", u.Redacted())
	}
	return s, nil
}

// DefaultPushGatewayConfig holds the defaults of push_gateway.
// UnmarshalYAML copies it; it is never modified.
var DefaultPushGatewayConfig = PushGatewayConfig{
	PublisherLabelName: DefaultPublisherLabelName,
	Timeout:            Duration(DefaultPushTimeout),
	Concurrency:        DefaultPushConcurrency,
	DeleteAfter:        Duration(24 * time.Hour),
	HTTPClientConfig:   commoncfg.DefaultHTTPClientConfig,
}

// PushGatewayConfig is where the receiver pushes scrapes.
type PushGatewayConfig struct {
	// URL is the Pushgateway's base URL (http or https); a trailing / is removed.
	URL string `yaml:"url,omitempty"`
	// PublisherLabel adds the publishing poller's identity to the grouping
	// key under PublisherLabelName.
	PublisherLabel bool `yaml:"publisher_label,omitempty"`
	// PublisherLabelName is the label PublisherLabel uses.
	PublisherLabelName string `yaml:"publisher_label_name"`
	// Timeout bounds one push.
	Timeout Duration `yaml:"timeout"`
	// Concurrency is how many groups are pushed at once.
	Concurrency int `yaml:"concurrency"`
	// DownAfter is how long a group may go without a new scrape before the
	// receiver replaces it with up 0, so a target that disappeared (removed
	// from its poller, or its whole DC silent) does not look current
	// forever. Default: DerivedDownAfter(max_age), applied in finish.
	DownAfter Duration `yaml:"down_after"`
	// DeleteAfter is how long a group may go without a new scrape before
	// the receiver deletes it from the Pushgateway; 0 keeps it (as up 0).
	DeleteAfter Duration `yaml:"delete_after"`
	// HTTPClientConfig is how to reach the Pushgateway, written inline as
	// in Prometheus: basic_auth, authorization, oauth2, tls_config,
	// proxy_url, follow_redirects, enable_http2, http_headers... Parse
	// validates it and resolves its relative file paths against the
	// configuration file's directory.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML decodes the section over a copy of DefaultPushGatewayConfig.
func (g *PushGatewayConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*g = DefaultPushGatewayConfig
	type plain PushGatewayConfig
	return unmarshal((*plain)(g))
}

func (g *PushGatewayConfig) check(k *checker, p keyPath) {
	if g.URL != "" {
		if err := checkHTTPURL(g.URL); err != nil {
			k.errorf(p.with("url"), "%w", err)
		}
		g.URL = strings.TrimRight(g.URL, "/")
	}
	if g.Timeout <= 0 {
		k.errorf(p.with("timeout"), "must be greater than 0")
	}
	if g.Concurrency < 1 {
		k.errorf(p.with("concurrency"), "must be at least 1")
	}
	if g.DownAfter < 0 {
		k.errorf(p.with("down_after"), "must not be negative")
	}
	if g.DeleteAfter < 0 {
		k.errorf(p.with("delete_after"), "must not be negative (0 keeps groups)")
	}
	checkPublisherLabelName(k, p.with("publisher_label_name"), g.PublisherLabelName)
	checkHTTPClient(k, p, &g.HTTPClientConfig)
}

// checkPublisherLabelName accepts a legacy label name that is not job,
// instance or reserved (__*): the publisher label sits beside job and
// instance in push_gateway's grouping key and in serve's /sd targets.
func checkPublisherLabelName(k *checker, p keyPath, n string) {
	switch {
	case !model.LegacyValidation.IsValidLabelName(n):
		k.errorf(p, "%q is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)", n)
	case n == "job" || n == "instance" || strings.HasPrefix(n, "__"):
		k.errorf(p, "%q is reserved", n)
	}
}

// checkHTTPURL accepts an absolute http or https URL with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", u.Redacted())
	}
	return nil
}
