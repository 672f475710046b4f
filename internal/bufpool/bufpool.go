// Package bufpool lends reusable byte slices for work that needs one per
// scrape (compressing a body, inflating one), so that memory follows the
// scrapes in progress rather than the number of targets, and no huge body
// stays pinned in the pool.
package bufpool

import "sync"

// MaxKept is the largest buffer put back for reuse. One huge body (up to
// body_size_limit) must not leave that much memory pinned for every later
// use; such a buffer is left to the garbage collector instead.
const MaxKept = 4 << 20

// Slices lends *[]byte. The zero value is ready to use and safe for
// concurrent use. sync.Pool drops idle buffers over two garbage
// collections, so a burst of concurrent users does not pin memory either.
type Slices struct{ p sync.Pool }

// Get returns a buffer whose slice has length 0 and the capacity of an
// earlier use when one is free. The caller stores the slice it built back
// through the pointer before Put, so that a buffer that had to grow is the
// one reused.
func (s *Slices) Get() *[]byte {
	if buf, ok := s.p.Get().(*[]byte); ok {
		return buf
	}
	return new([]byte)
}

// Put gives buf back, unless it grew beyond MaxKept; the caller must not
// use it, or the slice it pointed to, afterwards.
func (s *Slices) Put(buf *[]byte) {
	if cap(*buf) > MaxKept {
		return
	}
	*buf = (*buf)[:0]
	s.p.Put(buf)
}
