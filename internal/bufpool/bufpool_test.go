package bufpool

import "testing"

func TestSlicesReuseAndDropHugeBuffers(t *testing.T) {
	var s Slices
	buf := s.Get()
	if len(*buf) != 0 {
		t.Fatalf("a new buffer has length %d", len(*buf))
	}
	*buf = append(*buf, "scrape body"...)
	s.Put(buf)
	// sync.Pool may drop what it was given, but never lends a buffer that
	// is not empty.
	if got := s.Get(); len(*got) != 0 {
		t.Errorf("lent a buffer of length %d", len(*got))
	}
	huge := make([]byte, 0, MaxKept+1)
	s.Put(&huge)
	for range 100 {
		if got := s.Get(); cap(*got) > MaxKept {
			t.Fatalf("lent a %d byte buffer, more than MaxKept", cap(*got))
		}
	}
}
