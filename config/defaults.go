package config

import "time"

// The defaults below are the ones a library package also applies to a zero
// field of its options, declared once, here. The libraries refer to these
// (stream.DefaultAckWait is DefaultAckWait...) rather than config to
// theirs, because config imports nothing of ours (DESIGN.md) while a
// library may import config, as the poller does for its targets; a leaf
// package of defaults would have been an import of config's. A default
// only the file has (scrape_interval, push_gateway.delete_after...) stays
// in its section's Default... value.

// DefaultBodySizeLimit is body_size_limit's default: the largest scrape
// body the poller reads and the largest body an output inflates.
const DefaultBodySizeLimit = 16 << 20

// Defaults and bounds of poller_stream and receiver_stream.
const (
	// DefaultMaxInflight is max_inflight's default: unacknowledged
	// publishes (poller) or deliveries (receiver).
	DefaultMaxInflight = 64
	// DefaultAckWait is ack_wait's default.
	DefaultAckWait = 30 * time.Second
	// MinAckWait is the shortest ack_wait: NATS Streaming's smallest.
	MinAckWait = time.Second
	// DefaultConnectTimeout is connect_timeout's default.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultConsumer is consumer's default: the JetStream durable
	// consumer every receiver of one configuration shares.
	DefaultConsumer = "prometheus-streams"
	// DefaultPinnedTTL is pinned_ttl's default.
	DefaultPinnedTTL = 5 * time.Second
	// MinPinnedTTL is the shortest pinned_ttl: the active receiver pulls
	// every half of it to keep the pin, and nats.go's shortest pull
	// expiry is 1s.
	MinPinnedTTL = 2 * time.Second
)

// DefaultPublisherLabelName is publisher_label_name's default, in
// push_gateway and in serve.
const DefaultPublisherLabelName = "publisher"

// Defaults of push_gateway.
const (
	// DefaultPushTimeout is timeout's default: the bound on one push.
	DefaultPushTimeout = 10 * time.Second
	// DefaultPushConcurrency is concurrency's default: groups pushed at once.
	DefaultPushConcurrency = 4
)

// Defaults of serve.
const (
	// DefaultServeDeleteAfter is delete_after's default while max_age is
	// shorter; see DerivedServeDeleteAfter.
	DefaultServeDeleteAfter = time.Hour
	// DefaultServeMaxGroups is max_groups' default.
	DefaultServeMaxGroups = 100_000
	// DefaultServeMaxBytes is max_bytes' default.
	DefaultServeMaxBytes = 1 << 30
	// DefaultServeMaxConcurrentScrapes is max_concurrent_scrapes' default.
	DefaultServeMaxConcurrentScrapes = 64
	// DefaultServeWriteTimeout is write_timeout's default.
	DefaultServeWriteTimeout = 10 * time.Second
)

// maxDerivedScrapeTimeout caps the derived scrape_timeout default, as
// Prometheus does.
const maxDerivedScrapeTimeout = 10 * time.Second

// The Derived... functions are the defaults that depend on another value.
// Parse applies them to keys the file leaves unset; the libraries apply the
// same function to a zero option, in New and in their reload setters, so
// that a value left out means the same wherever it is filled in.

// DerivedScrapeTimeout is scrape_timeout's default for a scrape_interval:
// the interval, at most 10s, as Prometheus derives it.
func DerivedScrapeTimeout(interval time.Duration) time.Duration {
	return min(interval, maxDerivedScrapeTimeout)
}

// DerivedMaxAge is max_age's default for a scrape_interval: twice it.
func DerivedMaxAge(interval time.Duration) time.Duration {
	return 2 * interval
}

// DerivedDownAfter is push_gateway.down_after's default for a max_age:
// twice it.
func DerivedDownAfter(maxAge time.Duration) time.Duration {
	return 2 * maxAge
}

// DerivedServeDeleteAfter is serve.delete_after's default for a max_age:
// DefaultServeDeleteAfter, or max_age when that is longer, since a group
// must not leave /sd while its scrape is still current.
func DerivedServeDeleteAfter(maxAge time.Duration) time.Duration {
	return max(DefaultServeDeleteAfter, maxAge)
}
