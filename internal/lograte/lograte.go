// Package lograte keeps a message that can repeat every scrape or every
// push from flooding the log. The first of a kind in a minute is logged at
// its level (a warning, usually), the others at debug level.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every is how often a Limiter logs the messages of one key at its level.
// The messages callers pass say "for a minute": they depend on it.
const Every = time.Minute

// maxKeys bounds the keys a Limiter tells apart, so that keys made from
// what arrives cannot grow it without end; past it, new keys share one.
const maxKeys = 256

// Limiter logs each kind of repeating message (its key) at its level at
// most once per Every, and at debug level otherwise. It is safe for
// concurrent use.
type Limiter struct {
	log   *slog.Logger
	level slog.Level
	now   func() time.Time

	mu       sync.Mutex
	last     map[string]time.Time // when each key was last logged at level
	overflow time.Time            // the same, for the keys past maxKeys
}

// New returns a Limiter logging to logger (nil discards) at level.
func New(logger *slog.Logger, level slog.Level) *Limiter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{log: logger, level: level, now: time.Now, last: map[string]time.Time{}}
}

// Log logs loud at the Limiter's level when no message of key was logged at
// that level within Every, and quiet at debug level otherwise; args go with
// either. loud should say that further ones are logged at debug level.
func (l *Limiter) Log(key, loud, quiet string, args ...any) {
	if l.allow(key) {
		l.log.Log(context.Background(), l.level, loud, args...)
		return
	}
	l.log.Debug(quiet, args...)
}

// allow reports whether key may be logged at level now, and if so notes it.
func (l *Limiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	last, known := l.last[key]
	if !known && len(l.last) >= maxKeys {
		if !l.overflow.IsZero() && now.Sub(l.overflow) < Every {
			return false
		}
		l.overflow = now
		return true
	}
	if known && now.Sub(last) < Every {
		return false
	}
	l.last[key] = now
	return true
}
