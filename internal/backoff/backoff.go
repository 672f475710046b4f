// Package backoff waits between retries: exponentially growing delays with
// jitter, bounded, and always ended by a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields delays from Min doubling up to Max, each with up to 20%
// jitter so that many clients cut off together do not retry in lockstep.
// The zero value is not usable; a Backoff is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// New returns a Backoff from min to max. Non-positive values get sane
// defaults (100ms, 30s) so a missing setting cannot turn into a busy loop.
func New(minDelay, maxDelay time.Duration) *Backoff {
	if minDelay <= 0 {
		minDelay = 100 * time.Millisecond
	}
	if maxDelay < minDelay {
		maxDelay = max(minDelay, 30*time.Second)
	}
	return &Backoff{Min: minDelay, Max: maxDelay}
}

// Next returns the delay to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.next < b.Min {
		b.next = b.Min
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	return d - jitter
}

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps for the next delay or until ctx is done, whichever is first,
// and reports whether the caller should go on (false: ctx is done).
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
