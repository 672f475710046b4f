package poller

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/stream"
)

// discardPublisher acknowledges every message at once and keeps none of
// them, so that the heap a test measures is the poller's own: an embedded
// NATS Streaming server's memory store would hold every message in the
// same heap. It records which targets published a successful scrape.
type discardPublisher struct {
	ready chan struct{}
	mu    sync.Mutex
	ok    map[string]bool // by job and instance, as the outbox keys them
}

func newDiscardPublisher() *discardPublisher {
	ready := make(chan struct{})
	close(ready)
	return &discardPublisher{ready: ready, ok: map[string]bool{}}
}

func (d *discardPublisher) Publish(key stream.Key, data []byte, done func(error)) error {
	env, err := envelope.Decode(data)
	if err != nil {
		return err
	}
	if env.Outcome == envelope.OutcomeSuccess {
		d.mu.Lock()
		d.ok[key.Job+"\x00"+key.Instance] = true
		d.mu.Unlock()
	}
	go done(nil)
	return nil
}

func (d *discardPublisher) MaxPayload() int        { return 1 << 20 }
func (d *discardPublisher) Ready() <-chan struct{} { return d.ready }

// succeeded reports whether the target with outbox key published a
// successful scrape.
func (d *discardPublisher) succeeded(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ok[key]
}

// targets is how many targets published a successful scrape.
func (d *discardPublisher) targets() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ok)
}

// heapInuse collects garbage twice, which also empties the sync.Pools
// (their idle items survive one collection), and returns the bytes of
// heap in use.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestManyTargetsShareBuffers(t *testing.T) {
	// Every target loop used to keep its body buffer (64 KiB for this
	// sample) and its compressed body (67 KiB) between scrapes: the heap
	// grew by about 70 MiB for these targets (280 MiB for 2000). Borrowed
	// for one scrape instead, they are free once no scrape is reading a
	// body, and what remains is mostly the targets' metric series (about
	// 3 MiB; it grows with the targets, as the limit does).
	const targets = 500
	sample := testenv.Sample(t, "node_exporter.prom")
	pub := newDiscardPublisher()
	// The exporter serves each target the sample until the target has
	// published it, and 503 (which borrows no buffer) from then on. Once
	// every target has published, no scrape is reading a body, however
	// slowly a loaded machine runs them, so the measure is exact; and a
	// target whose scrape timed out on a loaded machine gets another go.
	exp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pub.succeeded("node\x00" + r.URL.Query().Get("target")) {
			http.Error(w, "scraped already", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = w.Write(sample)
	}))
	t.Cleanup(exp.Close)
	list := make([]config.Target, targets)
	for i := range list {
		name := fmt.Sprintf("n%d", i)
		list[i] = config.Target{Job: "node", Name: name, URL: exp.URL + "/metrics?target=" + name}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)

	before := heapInuse()
	// 400 scrapes a second: a light load even under the race detector
	// beside other tests, so that scrapes rarely time out.
	p, _ := newPoller(t, pub, Options{Interval: 1250 * time.Millisecond, Targets: list, HTTPClient: &http.Client{Transport: tr}})
	testenv.Run(t, p.Run)
	testenv.WaitFor(t, "a successful scrape of every target", time.Minute, func() bool {
		return pub.targets() == targets
	})
	after := heapInuse()

	grew := int64(after) - int64(before)
	limit := int64(targets * len(sample) / 3)
	t.Logf("heap in use grew by %.1f MiB for %d targets (limit %.1f MiB)", float64(grew)/(1<<20), targets, float64(limit)/(1<<20))
	if grew > limit {
		t.Fatalf("heap in use grew by %d bytes for %d targets, want at most %d (a third of one %d byte body per target)",
			grew, targets, limit, len(sample))
	}
}

func TestBuffersDropHugeOnes(t *testing.T) {
	var b buffers
	huge := bytes.NewBuffer(make([]byte, 0, maxKeptBuffer+1))
	b.putBody(huge)
	hugeCompressed := make([]byte, 0, maxKeptBuffer+1)
	b.putCompression(&hugeCompressed)
	for range 10 {
		if got := b.body(); got == huge || got.Cap() > maxKeptBuffer {
			t.Fatalf("the pool lent a %d byte body buffer, more than maxKeptBuffer", got.Cap())
		}
		if got := b.compression(); cap(*got) > maxKeptBuffer {
			t.Fatalf("the pool lent a %d byte compression buffer, more than maxKeptBuffer", cap(*got))
		}
	}
}

func TestBuffersComeBackEmpty(t *testing.T) {
	var b buffers
	body := b.body()
	body.WriteString("scrape")
	b.putBody(body)
	compressed := b.compression()
	*compressed = append(*compressed, "block"...)
	b.putCompression(compressed)
	for range 10 {
		if got := b.body(); got.Len() != 0 {
			t.Fatalf("the pool lent a body buffer holding %q", got.String())
		}
		if got := b.compression(); len(*got) != 0 {
			t.Fatalf("the pool lent a compression buffer holding %q", *got)
		}
	}
}
