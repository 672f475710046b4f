package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/internal/testenv"
)

const (
	// waitTimeout bounds every wait for a condition: generous, since
	// Prometheus and the pipeline start cold, while pollEvery keeps the
	// test fast when things work.
	waitTimeout = 60 * time.Second
	pollEvery   = 250 * time.Millisecond
)

// waitUntil polls cond every pollEvery until it returns nil. It fails the
// test with cond's last error when waitTimeout passes, or at once when one
// of watch exits, since then the condition can no longer come true.
func waitUntil(t *testing.T, what string, cond func() error, watch ...*process) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		for _, p := range watch {
			if perr := p.alive(); perr != nil {
				t.Fatalf("waiting for %s: %v (last: %v)", what, perr, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", waitTimeout, what, err)
		}
		<-tick.C
	}
}

// newHTTPClient returns a client whose idle connections are closed when
// the test ends, so goleak in TestMain sees no leftover connection.
func newHTTPClient(t *testing.T) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get fetches url and returns its body; a status other than 200 is an error.
func get(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// hostPort is 127.0.0.1:port.
func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// countingExporter serves e2e_scrapes_total, the number of the scrape it
// answers, so a value that reached an output says which scrape it came
// from; served is how many it answered.
func countingExporter(t *testing.T) (exp *httptest.Server, served *atomic.Int64) {
	t.Helper()
	served = &atomic.Int64{}
	exp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", testenv.TextContentType)
		fmt.Fprintf(w, "# TYPE e2e_scrapes_total counter\ne2e_scrapes_total %d\n", served.Add(1))
	}))
	t.Cleanup(exp.Close)
	return exp, served
}
