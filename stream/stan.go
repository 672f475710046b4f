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
	"github.com/nats-io/stan.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/internal/backoff"
)

// STANOptions configures a NATS Streaming connection.
type STANOptions struct {
	URLs      []string
	ClusterID string
	// ClientID must be unique per connection on the cluster and stable across
	// restarts: the server ties durable subscriptions to it.
	ClientID string
	Channel  string
	TLS      *tls.Config
	// ConnectTimeout bounds the NATS dial and the streaming connect request.
	// It must exceed the server's check of a stale connection holding the same
	// client ID (about a second), or a restarted process cannot replace it.
	ConnectTimeout time.Duration
	// AckWait is the publish acknowledgement timeout for a publisher and the
	// redelivery timeout for a subscriber.
	AckWait time.Duration
	// MaxInflight bounds unacknowledged deliveries of a subscription. For a
	// publisher it sizes the client library's window, which the caller must
	// not exceed (Publish would block).
	MaxInflight int
	// Durable is the durable subscription name (subscribers only).
	Durable string
	// PingInterval (seconds) and PingMaxOut decide how fast a dead server is
	// noticed: after PingInterval*PingMaxOut seconds without an answer.
	PingInterval, PingMaxOut int
	// BackoffMin and BackoffMax bound the wait between connection attempts.
	BackoffMin, BackoffMax time.Duration

	// At most one of Credentials, NKeySeedFile, User (with Password) and
	// Token authenticates to NATS. The files are read on every connection
	// attempt, so one put in place (or fixed) later is picked up without a
	// restart.

	// Credentials is the path of a NATS .creds file (user JWT and seed).
	Credentials string
	// NKeySeedFile is the path of a file holding an nkey user seed.
	NKeySeedFile string
	// User and Password authenticate with a user name.
	User, Password string
	// Token authenticates with a token.
	Token string
}

// NATS Streaming's defaults: a dead server is noticed after 10s without
// an answer to a ping.
const (
	// DefaultPingInterval is PingInterval's default, in seconds.
	DefaultPingInterval = 2
	// DefaultPingMaxOut is PingMaxOut's default.
	DefaultPingMaxOut = 5
)

func (o *STANOptions) applyDefaults() error {
	if len(o.URLs) == 0 || o.ClusterID == "" || o.ClientID == "" || o.Channel == "" {
		return errors.New("stream: urls, cluster_id, client_id and topic are required")
	}
	if err := o.auth("").check(); err != nil {
		return err
	}
	defaultTimings(&o.ConnectTimeout, &o.AckWait, &o.MaxInflight, &o.BackoffMin, &o.BackoffMax)
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PingMaxOut <= 0 {
		o.PingMaxOut = DefaultPingMaxOut
	}
	return nil
}

// connection keeps one NATS Streaming connection up: it connects with
// backoff, lets the owner set up subscriptions on every new connection, and
// starts over when the connection is lost (server restarts, a memory store
// that forgot this client, failed pings).
type connection struct {
	opts    STANOptions
	log     *slog.Logger
	metrics *connMetrics
	// section is the configuration section these options come from
	// (poller_stream, receiver_stream), which connection errors point at.
	section string

	mu    sync.Mutex
	conn  stan.Conn
	ready chan struct{} // closed while conn != nil
	// down is closed when conn is dropped, so work done on one connection
	// (a replay) learns that it is gone; nil while conn == nil.
	down chan struct{}
}

func newConnection(opts STANOptions, role string, logger *slog.Logger, reg prometheus.Registerer) (*connection, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	logger, m, err := connBasics(role, logger, reg)
	if err != nil {
		return nil, err
	}
	return &connection{
		opts:    opts,
		log:     logger.With("component", "stream", "cluster_id", opts.ClusterID, "client_id", opts.ClientID),
		metrics: m,
		section: role + "_stream",
		ready:   make(chan struct{}),
	}, nil
}

// auth is what connecting to NATS takes from opts.
func (o *STANOptions) auth(section string) natsAuth {
	return natsAuth{
		URLs: o.URLs, TLS: o.TLS, Credentials: o.Credentials, NKeySeedFile: o.NKeySeedFile,
		User: o.User, Password: o.Password, Token: o.Token, section: section,
	}
}

// current returns the live connection, or nil.
func (c *connection) current() stan.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func (c *connection) readyChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// session returns the live connection and a channel that is closed when
// that connection is dropped, or nil and the channel that is closed once
// one is up. Returning them together is what makes the pair consistent.
func (c *connection) session() (sc stan.Conn, down, ready <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.down, c.ready
}

func (c *connection) set(sc stan.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sc != nil {
		c.conn = sc
		c.down = make(chan struct{})
		close(c.ready)
		c.metrics.connected.Set(1)
		return
	}
	if c.conn != nil {
		c.conn = nil
		close(c.down)
		c.down = nil
		c.ready = make(chan struct{})
	}
	c.metrics.connected.Set(0)
}

// dial makes one connection attempt. lost receives the reason the
// connection was lost, at most once.
func (c *connection) dial(lost chan<- error) (*ownedConn, error) {
	// The streaming layer decides when the session is gone (pings); the
	// NATS layer keeps trying underneath it meanwhile.
	nc, err := c.opts.auth(c.section).dial(c.opts.ClientID, c.opts.ConnectTimeout, c.opts.BackoffMin,
		// Counted, as the stream layer may not notice: a TCP connection
		// dropped and made again underneath a session that survives.
		nats.ReconnectHandler(func(*nats.Conn) {
			c.metrics.reconnects.Inc()
			c.log.Info("NATS connection re-established under the stream connection")
		}),
	)
	if err != nil {
		return nil, err
	}
	sc, err := stan.Connect(c.opts.ClusterID, c.opts.ClientID,
		stan.NatsConn(nc),
		stan.ConnectWait(c.opts.ConnectTimeout),
		stan.PubAckWait(c.opts.AckWait),
		stan.MaxPubAcksInflight(c.opts.MaxInflight),
		stan.Pings(c.opts.PingInterval, c.opts.PingMaxOut),
		stan.SetConnectionLostHandler(func(_ stan.Conn, err error) {
			select {
			case lost <- err:
			default:
			}
		}),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to streaming cluster %q as %q: %w", c.opts.ClusterID, c.opts.ClientID, err)
	}
	return &ownedConn{Conn: sc, nc: nc}, nil
}

// ownedConn closes the NATS connection we dialled together with the
// streaming session, since stan.go leaves a connection it did not create open.
type ownedConn struct {
	stan.Conn
	nc *nats.Conn
}

func (o *ownedConn) Close() error {
	if !o.nc.IsConnected() {
		o.abandon()
		return nil
	}
	// The close request waits up to the connect timeout for an answer; a
	// server that has just gone (the client has not noticed yet) never
	// answers, and shutdown should not wait for that. Closing the NATS
	// connection makes the pending request fail at once.
	done := make(chan error, 1)
	go func() { done <- o.Conn.Close() }()
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		o.nc.Close()
		return err
	case <-timer.C:
		o.nc.Close()
		return <-done
	}
}

// closeTimeout bounds the wait for the server's answer to a close request.
const closeTimeout = time.Second

// abandon drops the session without telling the server. The server closes
// sessions by client ID alone, so a close request after the session was
// lost could end the session of a process that has since taken over the
// same client ID; and while the server is unreachable the request would
// only wait for its timeout. Closing the NATS connection first makes
// stan.go's Close clean up locally and fail its request at once.
func (o *ownedConn) abandon() {
	o.nc.Close()
	_ = o.Conn.Close()
}

// run keeps a connection up until ctx is done. setup runs on every new
// connection (subscribing, for a subscriber); when it fails the connection
// is dropped and tried again.
func (c *connection) run(ctx context.Context, setup func(stan.Conn) error) error {
	b := backoff.New(c.opts.BackoffMin, c.opts.BackoffMax)
	failures := 0
	for ctx.Err() == nil {
		lost := make(chan error, 1)
		sc, err := c.dial(lost)
		if err == nil && setup != nil {
			if err = setup(sc); err != nil {
				_ = sc.Close()
			}
		}
		if err != nil {
			failures++
			c.metrics.attempts.WithLabelValues("failure").Inc()
			logRetry(ctx, c.log, slog.LevelWarn, "stream connection failed, retrying", err, failures)
			if !b.Wait(ctx) {
				break
			}
			continue
		}
		c.metrics.attempts.WithLabelValues("success").Inc()
		if failures > 0 {
			c.log.Info("stream connected", "after_attempts", failures+1)
		} else {
			c.log.Info("stream connected")
		}
		failures = 0
		connectedAt := time.Now()
		c.set(sc)
		select {
		case <-ctx.Done():
			c.set(nil)
			// Close, not Unsubscribe: the durable subscription stays.
			if err := sc.Close(); err != nil {
				c.log.Debug("closing stream connection", "err", err)
			}
			return nil
		case err := <-lost:
			c.set(nil)
			c.metrics.lost.Inc()
			c.log.Warn("stream connection lost, reconnecting", "err", err)
			sc.abandon()
			// Only a connection that stayed up a while resets the backoff,
			// so one that is lost right after connecting cannot make the
			// loop reconnect at full speed.
			if time.Since(connectedAt) > c.opts.BackoffMax {
				b.Reset()
			}
			if !b.Wait(ctx) {
				return nil
			}
		}
	}
	return nil
}

// STANPublisher publishes to a NATS Streaming channel. Run keeps its
// connection up; Publish fails fast with ErrNotConnected while it is down.
type STANPublisher struct {
	c *connection
}

var _ Publisher = (*STANPublisher)(nil)

// NewSTANPublisher returns a publisher; nothing connects until Run.
// Metrics are registered on reg with the label role="poller".
func NewSTANPublisher(opts STANOptions, logger *slog.Logger, reg prometheus.Registerer) (*STANPublisher, error) {
	c, err := newConnection(opts, "poller", logger, reg)
	if err != nil {
		return nil, err
	}
	return &STANPublisher{c: c}, nil
}

// Run connects and reconnects until ctx is done, then closes the connection.
// Publishes not yet acknowledged then fail with stan.ErrConnectionClosed.
func (p *STANPublisher) Run(ctx context.Context) error { return p.c.run(ctx, nil) }

// Publish implements Publisher.
func (p *STANPublisher) Publish(_ Key, data []byte, done func(error)) error {
	sc := p.c.current()
	if sc == nil {
		return ErrNotConnected
	}
	_, err := sc.PublishAsync(p.c.opts.Channel, data, func(_ string, err error) { done(translate(err)) })
	if err != nil {
		return fmt.Errorf("publish to %s: %w", p.c.opts.Channel, translate(err))
	}
	return nil
}

// translate maps stan.go's errors to this package's, keeping the original.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, stan.ErrTimeout):
		return fmt.Errorf("%w: %w", ErrAckTimeout, err)
	case errors.Is(err, stan.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	return err
}

// MaxPayload implements Publisher.
func (p *STANPublisher) MaxPayload() int {
	sc := p.c.current()
	if sc == nil || sc.NatsConn() == nil {
		return 0
	}
	return int(sc.NatsConn().MaxPayload())
}

// Ready implements Publisher.
func (p *STANPublisher) Ready() <-chan struct{} { return p.c.readyChan() }

// Connected reports whether the connection is up (for readiness checks).
func (p *STANPublisher) Connected() bool { return p.c.current() != nil }

// STANSubscriber holds a durable, manually acknowledged subscription to a
// NATS Streaming channel.
type STANSubscriber struct {
	c *connection
}

var _ Subscriber = (*STANSubscriber)(nil)

// NewSTANSubscriber returns a subscriber; nothing connects until Subscribe.
// An empty Durable defaults to the client ID, as in prometheus-streams 1.0.
// Metrics are registered on reg with the label role="receiver".
func NewSTANSubscriber(opts STANOptions, logger *slog.Logger, reg prometheus.Registerer) (*STANSubscriber, error) {
	if opts.Durable == "" {
		opts.Durable = opts.ClientID
	}
	c, err := newConnection(opts, "receiver", logger, reg)
	if err != nil {
		return nil, err
	}
	return &STANSubscriber{c: c}, nil
}

// Subscribe implements Subscriber. On first start the durable begins with
// all messages the channel still holds; afterwards it resumes where it was.
func (s *STANSubscriber) Subscribe(ctx context.Context, h Handler) error {
	o := s.c.opts
	return s.c.run(ctx, func(sc stan.Conn) error {
		_, err := sc.Subscribe(o.Channel, func(m *stan.Msg) { h(stanMsg{m}) },
			stan.DurableName(o.Durable),
			stan.SetManualAckMode(),
			stan.MaxInflight(o.MaxInflight),
			stan.AckWait(o.AckWait),
			stan.DeliverAllAvailable(),
		)
		if err != nil {
			return fmt.Errorf("subscribe to %s as durable %q: %w", o.Channel, o.Durable, err)
		}
		return nil
	})
}

// Connected reports whether the connection and subscription are up (for
// readiness checks).
func (s *STANSubscriber) Connected() bool { return s.c.current() != nil }

type stanMsg struct{ m *stan.Msg }

func (s stanMsg) Data() []byte      { return s.m.Data }
func (s stanMsg) Ack() error        { return s.m.Ack() }
func (s stanMsg) Redelivered() bool { return s.m.Redelivered }
func (s stanMsg) Term() error       { return s.m.Ack() }

func (stanMsg) Publisher() (string, bool) { return "", false }
