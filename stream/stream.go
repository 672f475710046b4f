// Package stream is the transport between pollers and receivers: publishing
// with acknowledgements and a durable, manually acknowledged subscription.
// NATS Streaming (for 1.0's users) and JetStream implement it; publishing
// takes the group's key because JetStream maps it to a subject of its own.
package stream

import (
	"context"
	"errors"
	"time"
)

// ErrNotConnected is returned by Publish while no connection to the stream is
// up; the caller keeps the message and tries again once Ready is closed.
var ErrNotConnected = errors.New("stream: not connected")

// ErrAckTimeout is passed to a publish's done callback when the server did
// not acknowledge the message in time; it may or may not have stored it.
var ErrAckTimeout = errors.New("stream: publish not acknowledged in time")

// ErrConnectionClosed is passed to a publish's done callback when the
// connection closed before the acknowledgement arrived.
var ErrConnectionClosed = errors.New("stream: connection closed")

// ErrReplayCutShort is wrapped by the error of a Replay that could not catch
// up, such as when the connection was lost; what it passed on stands.
var ErrReplayCutShort = errors.New("stream: replay cut short")

// ErrNoStream is passed to a publish's done callback when no stream stores
// the message's subject (JetStream: no responders), such as while the
// stream is missing.
var ErrNoStream = errors.New("stream: no stream stores the subject")

// ErrPermission is wrapped by errors the server gave because the
// connection's credentials do not allow the operation, such as publishing
// on a subject outside a DC's own.
var ErrPermission = errors.New("stream: permission denied")

// ErrTooLarge is passed to a publish's done callback when the stream
// refused the message for its size.
var ErrTooLarge = errors.New("stream: message larger than the stream accepts")

// Key names the group a message belongs to. NATS Streaming ignores it;
// JetStream publishes each group on a subject of its own made from it.
type Key struct {
	Publisher, Job, Instance string
}

// Publisher publishes messages and reports the server's acknowledgement.
//
// Implementations are safe for concurrent use. Publish never blocks on the
// network for longer than it takes to hand the message to the client library:
// bounding the number of unacknowledged messages is the caller's job.
type Publisher interface {
	// Publish sends data asynchronously. key is the message's group. done is called exactly once, from another goroutine,
	// with nil once the server stored the message or the reason it did not;
	// it is not called when Publish itself returns an error. data may be
	// reused by the caller as soon as Publish returns.
	Publish(key Key, data []byte, done func(error)) error
	// MaxPayload is the largest message the connected server (and, for
	// JetStream, the stream) accepts, or 0 while not connected.
	MaxPayload() int
	// Ready returns a channel that is closed while a connection is up. After
	// a connection is lost a new channel is returned, so callers ask again.
	Ready() <-chan struct{}
}

// Message is one delivered message awaiting acknowledgement.
type Message interface {
	// Data is the message body. It stays valid until the handler's caller
	// drops the Message; do not modify it.
	Data() []byte
	// Ack tells the server the message is dealt with. Acknowledging after
	// the connection it arrived on was lost fails; the server then delivers
	// the message again on the next connection.
	Ack() error
	// Redelivered reports whether the server delivered this message before.
	Redelivered() bool
	// Term tells the server never to deliver this message again: it cannot
	// be read, or it lies about its origin. NATS Streaming has no such
	// verdict and acknowledges it.
	Term() error
	// Publisher is the publisher the transport binds the message to, which
	// the publisher's NATS credentials can be limited to (JetStream: the
	// subject's publisher token); ok is false when the transport binds
	// none (NATS Streaming: one channel for all).
	Publisher() (publisher string, ok bool)
}

// Handler receives messages. It is called from one goroutine at a time per
// subscription and must not block for long: hand the message on and return.
type Handler func(Message)

// Subscriber holds a durable subscription.
type Subscriber interface {
	// Subscribe connects, subscribes durably and calls h for every message
	// until ctx is done, reconnecting and re-subscribing by itself when the
	// connection or the server's state is lost. It returns nil when ctx ends.
	// Closing keeps the durable subscription on the server.
	Subscribe(ctx context.Context, h Handler) error
}

// Replayer re-reads what a stream still holds of its recent past, for a
// consumer that keeps state in memory and must rebuild it after a start
// without waiting for new traffic.
type Replayer interface {
	// Replay calls h for every message the stream stored during the last
	// window, in the stream's order, and returns nil once it has caught up:
	// h has seen every message of the window that the stream held when
	// Replay began (each implementation states precisely how it tells).
	// The messages come from a subscription of Replay's own, which is not
	// durable and touches no durable subscription's position; their Ack
	// does nothing and returns nil, Redelivered is false, and no message
	// is passed twice.
	//
	// h is called from the goroutine that called Replay, one message at a
	// time, and never after Replay returned. While h runs no further
	// message is read, so the memory a replay holds stays bounded. Replay
	// may run while Subscribe runs on the same value, and waits for the
	// connection Subscribe establishes. It returns nil when ctx is done
	// (also before that connection was up), and an error when the
	// connection was lost before it caught up; the messages passed until
	// then stand; the error wraps ErrReplayCutShort. A window of zero or
	// less replays nothing.
	Replay(ctx context.Context, window time.Duration, h Handler) error
}
