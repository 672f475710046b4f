package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/internal/backoff"
)

// JetStream defaults. Those the configuration also has are config's (see
// DefaultConnectTimeout).
const (
	// DefaultConsumer is the durable consumer every receiver of one
	// configuration shares for the Pushgateway output (consumer).
	DefaultConsumer = config.DefaultConsumer
	// DefaultPinnedTTL is how long the server waits for the active
	// receiver's next pull before it hands the consumer to a standby: the
	// bulk of a failover's pause (pinned_ttl).
	DefaultPinnedTTL = config.DefaultPinnedTTL
	// PriorityGroup is the priority group the receivers pull in.
	PriorityGroup = "receivers"
	// MinPinnedTTL is the shortest PinnedTTL: the active receiver's pulls
	// expire after half of it so that it keeps the pin, and nats.go's
	// shortest pull expiry is 1s. With a shorter one the pin moves
	// between live receivers.
	MinPinnedTTL = config.MinPinnedTTL
)

// JSOptions configures a JetStream connection.
type JSOptions struct {
	URLs []string
	// Name names the connection on the server (client_id).
	Name           string
	TLS            *tls.Config
	ConnectTimeout time.Duration
	// At most one of Credentials, NKeySeedFile, User (with Password) and
	// Token, as in STANOptions.
	Credentials, NKeySeedFile, User, Password, Token string

	// Stream is the stream's name and Domain the JetStream domain whose
	// API serves it ("" for the one the connection is in).
	Stream, Domain string
	// Topic is the subject prefix: a group's subject is
	// Topic.<publisher>.<job>.<instance> (see Subject).
	Topic string
	// Create is the stream a publisher creates when Stream is missing;
	// nil never creates one.
	Create *StreamSettings

	// AckWait is the publish acknowledgement timeout for a publisher, and
	// the redelivery timeout for a subscriber.
	AckWait time.Duration
	// MaxInflight bounds unacknowledged publishes (the caller's job) or the
	// consumer's unacknowledged deliveries (MaxAckPending).
	MaxInflight int
	// Consumer is the durable consumer (subscribers only).
	Consumer string
	// PinnedTTL is how long a silent active receiver keeps the consumer
	// pinned before a standby takes over (subscribers only); at least
	// MinPinnedTTL.
	PinnedTTL time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts to
	// connect, and to find the stream and the consumer.
	BackoffMin, BackoffMax time.Duration
	// OnActive, when set, is called when this receiver becomes the active
	// one of the shared consumer, before the first message of its turn is
	// handed on; deliveries wait while it runs (subscribers only).
	OnActive func(context.Context)
	// OnInactive, when set, is called when this receiver has lost the
	// shared consumer (the server pinned another one, or the connection
	// went); deliveries of its turn not yet settled are handed back to the
	// server first (subscribers only). It must not block.
	OnInactive func()
}

// StreamSettings are what a publisher creates a missing stream with.
type StreamSettings struct {
	// MaxAge drops scrapes older than this (the configuration's max_age).
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; 0 leaves it unbounded (one
	// message per subject already bounds it by the number of targets).
	MaxBytes int64
	Replicas int
	Storage  jetstream.StorageType
}

func (o *JSOptions) applyDefaults() error {
	if len(o.URLs) == 0 || o.Stream == "" || o.Topic == "" || o.Name == "" {
		return errors.New("stream: urls, stream, topic and client_id are required")
	}
	if err := o.auth("").check(); err != nil {
		return err
	}
	defaultTimings(&o.ConnectTimeout, &o.AckWait, &o.MaxInflight, &o.BackoffMin, &o.BackoffMax)
	if o.Consumer == "" {
		o.Consumer = DefaultConsumer
	}
	if o.PinnedTTL <= 0 {
		o.PinnedTTL = DefaultPinnedTTL
	}
	o.PinnedTTL = max(o.PinnedTTL, MinPinnedTTL)
	return nil
}

func (o *JSOptions) auth(section string) natsAuth {
	return natsAuth{
		URLs: o.URLs, TLS: o.TLS, Credentials: o.Credentials, NKeySeedFile: o.NKeySeedFile,
		User: o.User, Password: o.Password, Token: o.Token, section: section,
	}
}

// jsConn is one NATS connection with JetStream. Unlike NATS Streaming, a
// JetStream session is the NATS connection itself: nats.go reconnects by
// itself, forever, and consumers and pending publishes carry over. So
// jsConn only makes the first connection (with backoff, and errors that
// name the keys to check) and tracks whether it is up.
type jsConn struct {
	opts    JSOptions
	log     *slog.Logger
	metrics *connMetrics
	section string
	// permissions is told of every permissions violation the server
	// reports; nil ignores them.
	permissions func(error)
	// down is called when the connection drops (not when we close it);
	// nil ignores it.
	down func()

	mu    sync.Mutex
	nc    *nats.Conn
	js    jetstream.JetStream
	ready chan struct{} // closed while connected
	// closed is closed once close began: what waits on the connection
	// (a publish's acknowledgement) gives up then, and the disconnect
	// that closing causes is not reported as a loss.
	closed    chan struct{}
	closeOnce sync.Once
}

func newJSConn(opts JSOptions, role string, logger *slog.Logger, reg prometheus.Registerer) (*jsConn, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	logger, m, err := connBasics(role, logger, reg)
	if err != nil {
		return nil, err
	}
	return &jsConn{
		opts:    opts,
		log:     logger.With("component", "stream", "stream", opts.Stream, "client_id", opts.Name),
		metrics: m,
		section: role + "_stream",
		ready:   make(chan struct{}),
		closed:  make(chan struct{}),
	}, nil
}

func (c *jsConn) readyChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// connected reports whether the connection is up.
func (c *jsConn) connected() bool {
	nc, _ := c.current()
	return nc != nil
}

// current returns the JetStream context while connected, or nil.
func (c *jsConn) current() (*nats.Conn, jetstream.JetStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ready:
		return c.nc, c.js
	default:
		return nil, nil
	}
}

func (c *jsConn) setUp(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ready:
		if !up {
			c.ready = make(chan struct{})
		}
	default:
		if up {
			close(c.ready)
		}
	}
	if up {
		c.metrics.connected.Set(1)
	} else {
		c.metrics.connected.Set(0)
	}
}

// connect makes the connection, trying again with backoff until it is up
// or ctx is done (then it returns nil and no error).
func (c *jsConn) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	b := backoff.New(c.opts.BackoffMin, c.opts.BackoffMax)
	for failures := 1; ctx.Err() == nil; failures++ {
		nc, err := c.dial()
		if err == nil {
			var js jetstream.JetStream
			jsOpts := []jetstream.JetStreamOpt{
				jetstream.WithPublishAsyncTimeout(c.opts.AckWait),
				jetstream.WithPublishAsyncMaxPending(c.opts.MaxInflight),
			}
			if c.opts.Domain != "" {
				js, err = jetstream.NewWithDomain(nc, c.opts.Domain, jsOpts...)
			} else {
				js, err = jetstream.New(nc, jsOpts...)
			}
			if err != nil {
				nc.Close()
				return nil, nil, fmt.Errorf("jetstream on %s: %w", redactedURLs(c.opts.URLs), err)
			}
			c.metrics.attempts.WithLabelValues("success").Inc()
			c.log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted(), "after_attempts", failures)
			c.mu.Lock()
			c.nc, c.js = nc, js
			c.mu.Unlock()
			c.setUp(true)
			return nc, js, nil
		}
		c.metrics.attempts.WithLabelValues("failure").Inc()
		logRetry(ctx, c.log, slog.LevelWarn, "connecting to NATS failed, retrying", err, failures)
		if !b.Wait(ctx) {
			break
		}
	}
	return nil, nil, nil
}

func (c *jsConn) dial() (*nats.Conn, error) {
	return c.opts.auth(c.section).dial(c.opts.Name, c.opts.ConnectTimeout, c.opts.BackoffMin,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.setUp(false)
			select {
			case <-c.closed:
				return // our own close
			default:
			}
			if c.down != nil {
				c.down()
			}
			c.metrics.lost.Inc()
			c.log.Warn("NATS connection lost, reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.metrics.reconnects.Inc()
			c.setUp(true)
			c.log.Info("NATS connection re-established", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) && c.permissions != nil {
				c.permissions(err)
				return
			}
			c.log.Warn("NATS reported an error", "err", err)
		}),
	)
}

// close ends the connection.
func (c *jsConn) close(nc *nats.Conn) {
	c.closeOnce.Do(func() { close(c.closed) })
	c.setUp(false)
	nc.Close()
}

// isPermission tells an error of a request the account may not make.
func isPermission(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) ||
		(errors.As(err, &apiErr) && apiErr.Code == 403)
}
