package serve

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
)

// Refusals of a scrape the store has no room for.
var (
	// ErrTooManyGroups: holding a new group would pass max_groups.
	ErrTooManyGroups = errors.New("serve: max_groups reached")
	// ErrTooManyBytes: holding the scrape would pass max_bytes.
	ErrTooManyBytes = errors.New("serve: max_bytes reached")
)

// groupID identifies a group: job, instance and, with the publisher label,
// the publisher.
type groupID struct {
	job, instance, publisher string
}

// held is a group's newest scrape, its body still compressed.
type held struct {
	id  groupID
	env *envelope.Envelope // Payload is a copy of its own, of exactly its length
	// size is what the group counts against max_bytes: the payload and the
	// header strings.
	size int64
	hash uint64 // of id, for list's fingerprint
}

// heldSize is what env costs to hold, for max_bytes: the bytes that grow
// with input (the payload and the strings); the fixed overhead per group is
// bounded by max_groups.
func heldSize(env *envelope.Envelope) int64 {
	return int64(len(env.Payload) + len(env.Job) + len(env.Instance) + len(env.Publisher) + len(env.Error) + len(env.ContentType))
}

// store holds each group's newest scrape, bounded by a number of groups and
// of bytes. Safe for concurrent use: Offer writes from the stream's
// goroutine while scrape requests read.
type store struct {
	maxGroups int
	maxBytes  int64

	mu     sync.RWMutex
	groups map[groupID]*held
	bytes  int64
	// seed hashes group IDs for list's fingerprint.
	seed maphash.Seed
	// conflicts counts scrapes held over one of another publisher: two
	// DCs writing one group, which only a group ID without the publisher
	// lets happen.
	conflicts uint64
}

func newStore(maxGroups int, maxBytes int64) *store {
	return &store{maxGroups: maxGroups, maxBytes: maxBytes, groups: map[groupID]*held{}, seed: maphash.MakeSeed()}
}

// putResult says what put did.
type putResult uint8

const (
	putHeld  putResult = iota // env is the group's scrape now
	putSame                   // the group holds this scrape already (a redelivery)
	putOlder                  // the group holds a newer scrape: env is superseded
)

// put holds a copy of env for id unless the group already has a scrape
// that started at the same time or later, or there is no room for it (an
// error wrapping ErrTooManyGroups or ErrTooManyBytes). A scrape is refused
// rather than an older group evicted: which groups matter is the
// operator's call, and a refusal is counted where an eviction would
// silently take a target away.
func (s *store) put(id groupID, env *envelope.Envelope) (putResult, error) {
	size := heldSize(env)
	s.mu.Lock()
	defer s.mu.Unlock()
	if res := s.compareLocked(id, env.ScrapeStart); res != putHeld {
		return res, nil
	}
	old := s.groups[id]
	var oldSize int64
	if old != nil {
		oldSize = old.size
	} else if len(s.groups) >= s.maxGroups {
		return putOlder, fmt.Errorf("%w (%d groups): %s/%s not held", ErrTooManyGroups, s.maxGroups, id.job, id.instance)
	}
	if s.bytes-oldSize+size > s.maxBytes {
		return putOlder, fmt.Errorf("%w (%d bytes held, %d more needed, limit %d): %s/%s not held", ErrTooManyBytes, s.bytes, size-oldSize, s.maxBytes, id.job, id.instance)
	}
	kept := *env
	// A copy of exactly its size, made only once the scrape is kept: the
	// message buffer the payload aliases is freed, and what max_bytes
	// counts is what is held.
	kept.Payload = append(make([]byte, 0, len(env.Payload)), env.Payload...)
	h := uint64(0)
	if old != nil {
		h = old.hash
		if old.env.Publisher != env.Publisher {
			s.conflicts++
		}
	} else {
		h = maphash.Comparable(s.seed, id)
	}
	s.groups[id] = &held{id: id, env: &kept, size: size, hash: h}
	s.bytes += size - oldSize
	return putHeld, nil
}

// compare tells what put would make of a scrape of id that started at
// start, as far as the group's held scrape decides: putSame, putOlder, or
// putHeld when the scrape is newer (or the group new).
func (s *store) compare(id groupID, start time.Time) putResult {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compareLocked(id, start)
}

// compareLocked is compare with mu held.
func (s *store) compareLocked(id groupID, start time.Time) putResult {
	old := s.groups[id]
	switch {
	case old == nil || start.After(old.env.ScrapeStart):
		return putHeld
	case start.Equal(old.env.ScrapeStart):
		return putSame
	}
	return putOlder
}

// get returns the group's newest scrape, or nil.
func (s *store) get(id groupID) *envelope.Envelope {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if h := s.groups[id]; h != nil {
		return h.env
	}
	return nil
}

// removeBefore forgets the groups whose newest scrape started before t and
// returns how many.
func (s *store) removeBefore(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, h := range s.groups {
		if h.env.ScrapeStart.Before(t) {
			delete(s.groups, id)
			s.bytes -= h.size
			n++
		}
	}
	return n
}

// list returns the groups whose newest scrape started at or after since,
// sorted, so /sd answers the same document for the same state, and a
// fingerprint of the set: equal fingerprints mean the same groups (bar a
// 64-bit hash collision), however the set came about.
func (s *store) list(since time.Time) ([]groupID, uint64) {
	s.mu.RLock()
	var sum uint64
	ids := make([]groupID, 0, len(s.groups))
	for id, h := range s.groups {
		if !h.env.ScrapeStart.Before(since) {
			ids = append(ids, id)
			sum += h.hash
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(ids, func(a, b groupID) int {
		if c := strings.Compare(a.job, b.job); c != 0 {
			return c
		}
		if c := strings.Compare(a.instance, b.instance); c != 0 {
			return c
		}
		return strings.Compare(a.publisher, b.publisher)
	})
	return ids, sum
}

// counts is the store's state for its gauges.
type counts struct {
	groups, failed, stale int
	bytes                 int64
	// newest is the start of the newest scrape held of each publisher.
	newest map[string]time.Time
}

// count returns the number of groups held, of those whose newest scrape
// failed and of those older than staleBefore, the bytes held, and the
// newest scrape of each publisher.
func (s *store) count(staleBefore time.Time) counts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := counts{groups: len(s.groups), bytes: s.bytes, newest: map[string]time.Time{}}
	for _, h := range s.groups {
		if t := h.env.ScrapeStart; t.After(c.newest[h.env.Publisher]) {
			c.newest[h.env.Publisher] = t
		}
		switch {
		case h.env.ScrapeStart.Before(staleBefore):
			c.stale++
		case h.env.Outcome != envelope.OutcomeSuccess:
			c.failed++
		}
	}
	return c
}

// publisherConflicts returns how many scrapes replaced one of another
// publisher.
func (s *store) publisherConflicts() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.conflicts
}
