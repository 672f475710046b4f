package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/stan.go"
)

const (
	// replayMaxInflight lets the server run well ahead of the handler, so
	// the replay is not paced by acknowledgement round trips; it is also
	// the most messages a replay holds in memory, as the client library
	// buffers what the server sends and the server sends no more than this
	// unacknowledged. A smaller max_inflight of the stream section, which
	// an operator sets to bound memory, wins.
	replayMaxInflight = 256
	// replayAckWait is long because a replay's messages are acknowledged
	// only once the handler takes them: with a short one, a slow handler
	// would have the server send everything in flight again.
	replayAckWait = time.Minute
	// replayIdle is how long a replay waits for a message when nothing
	// else can tell it that none is coming. The server sends a new
	// subscription's stored messages right after accepting it, so a
	// second of silence means there are none, with a wide margin.
	replayIdle = time.Second
	// replaySeek is how long a replay waits for its next message when the
	// channel's last message lies within the window, so that at least that
	// one must come: a server seeking through a large file store may take
	// longer than replayIdle to send the first, and ending then would
	// silently replay nothing.
	replaySeek = 30 * time.Second
)

var _ Replayer = (*STANSubscriber)(nil)

// Replay implements Replayer. It can be called while Subscribe runs (or
// before it does) and uses the connection Subscribe establishes, from
// subscriptions of its own that are not durable and acknowledge by
// themselves.
//
// Caught up means: every message up to the channel's head has been passed
// to h, the head being the channel's last sequence once Replay has a
// connection (read with a subscription that starts at the last message, and
// closed at once). The replay ends after the message with that sequence,
// or at the first later one (which it does not pass: it was stored after
// Replay began and the durable has it). Sequence numbers are the server's,
// so this needs no clock: neither the skew between this host and the
// server nor steady traffic can end the replay early or keep it going.
// And the head covers every message the durable acknowledged before this
// start, since Subscribe's durable exists on the connection before Replay
// uses it. Only when no message tells — the channel holds none, or none of
// the window up to the head and no new one arrives — does replayIdle
// without a delivery end the replay.
func (s *STANSubscriber) Replay(ctx context.Context, window time.Duration, h Handler) error {
	if window <= 0 {
		return nil
	}
	sc, down := s.c.await(ctx)
	if sc == nil {
		return nil
	}
	head, headTime, err := s.head(ctx, sc, down)
	if err != nil || head == 0 || ctx.Err() != nil {
		return err
	}
	// The server's clock stamps messages and judges the window; ours only
	// chooses how long to wait, so a skew cannot lose a message.
	wait := replayIdle
	if time.Since(headTime) < window {
		wait = replaySeek
	}
	return s.replay(ctx, sc, down, window, head, wait, h)
}

// await waits for a connection and returns it with the channel that is
// closed when it is dropped, or nil once ctx is done.
func (c *connection) await(ctx context.Context) (stan.Conn, <-chan struct{}) {
	for {
		sc, down, ready := c.session()
		if sc != nil {
			return sc, down
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// head returns the channel's last sequence and when the server stored it,
// or 0 when the channel holds no message (or ctx is done).
func (s *STANSubscriber) head(ctx context.Context, sc stan.Conn, down <-chan struct{}) (uint64, time.Time, error) {
	ch := s.c.opts.Channel
	got := make(chan *stan.Msg, 1)
	sub, err := sc.Subscribe(ch, func(m *stan.Msg) {
		// Only the first message is the last one at subscription time;
		// whatever is published after it is dropped here.
		select {
		case got <- m:
		default:
		}
	}, stan.StartWithLastReceived(), stan.MaxInflight(1))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%w: subscribe to %s for its last message: %w", ErrReplayCutShort, ch, err)
	}
	defer s.closeReplaySub(sub)
	idle := time.NewTimer(replayIdle)
	defer idle.Stop()
	select {
	case m := <-got:
		return m.Sequence, time.Unix(0, m.Timestamp), nil
	case <-ctx.Done():
		return 0, time.Time{}, nil
	case <-down:
		return 0, time.Time{}, s.lost(ctx, "before reading the channel's last message")
	case <-idle.C:
		if !sc.NatsConn().IsConnected() {
			return 0, time.Time{}, s.lost(ctx, "before reading the channel's last message")
		}
		return 0, time.Time{}, nil
	}
}

// replay passes the messages of the last window up to head to h; see
// Replay for when it ends. wait is how long it waits for a message.
func (s *STANSubscriber) replay(ctx context.Context, sc stan.Conn, down <-chan struct{}, window time.Duration, head uint64, wait time.Duration, h Handler) error {
	ch := s.c.opts.Channel
	// Messages are handed over to this goroutine, so that h runs here and
	// never after Replay returned, and the subscription's own goroutine
	// (not Subscribe's: each subscription has its own) waits meanwhile.
	msgs := make(chan *stan.Msg)
	stop := make(chan struct{})
	sub, err := sc.Subscribe(ch, func(m *stan.Msg) {
		select {
		case msgs <- m:
		case <-stop:
		}
	}, stan.StartAtTimeDelta(window), stan.MaxInflight(min(s.c.opts.MaxInflight, replayMaxInflight)), stan.AckWait(replayAckWait))
	if err != nil {
		return fmt.Errorf("%w: subscribe to %s from %v ago: %w", ErrReplayCutShort, ch, window, err)
	}
	defer func() {
		close(stop)
		s.closeReplaySub(sub)
	}()

	idle := time.NewTimer(wait)
	defer idle.Stop()
	var last uint64
	passed := 0
	for {
		// Checked before each message, as select picks at random among
		// ready cases and the messages may all be waiting already.
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-down:
			return s.lost(ctx, fmt.Sprintf("after %d messages", passed))
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-down:
			return s.lost(ctx, fmt.Sprintf("after %d messages", passed))
		case <-idle.C:
			if !sc.NatsConn().IsConnected() {
				return s.lost(ctx, fmt.Sprintf("after %d messages", passed))
			}
			if wait == replaySeek {
				return fmt.Errorf("%w: no message for %v after %d, before the channel's last (sequence %d) that lies within the window", ErrReplayCutShort, wait, passed, head)
			}
			s.c.log.Debug("replay found no more messages in the window", "window", window, "passed", passed)
			return nil
		case m := <-msgs:
			switch {
			case m.Sequence <= last:
				// Sent again after replayAckWait; passed already.
			case m.Sequence > head:
				s.c.log.Debug("replay caught up", "window", window, "passed", passed)
				return nil
			default:
				last = m.Sequence
				passed++
				h(replayMsg{m})
				if last == head {
					s.c.log.Debug("replay caught up", "window", window, "passed", passed)
					return nil
				}
			}
			idle.Reset(wait)
		}
	}
}

// lost is the error for a connection lost during a replay, or nil when
// ctx is done: a shutdown drops the connection too.
func (s *STANSubscriber) lost(ctx context.Context, when string) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%w: connection to %s lost %s", ErrReplayCutShort, redactedURLs(s.c.opts.URLs), when)
}

// closeReplaySub removes a replay's subscription from the server. On a
// connection being dropped this fails, which is fine: the server forgets
// a non-durable subscription together with its connection.
func (s *STANSubscriber) closeReplaySub(sub stan.Subscription) {
	if err := sub.Unsubscribe(); err != nil {
		s.c.log.Debug("closing a replay subscription", "err", err)
	}
}

// replayMsg is a replayed message. Its subscription acknowledges by
// itself, and a message it delivers again is not passed on, so Ack does
// nothing and Redelivered is false.
type replayMsg struct{ m *stan.Msg }

func (r replayMsg) Data() []byte    { return r.m.Data }
func (replayMsg) Ack() error        { return nil }
func (replayMsg) Redelivered() bool { return false }
func (replayMsg) Term() error       { return nil }

func (replayMsg) Publisher() (string, bool) { return "", false }
