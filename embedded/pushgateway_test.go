package embedded_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/prometheus-streams/embedded"
)

func startPushgateway(t *testing.T, opts embedded.PushgatewayOptions) *embedded.Pushgateway {
	t.Helper()
	p, err := embedded.StartPushgateway(opts)
	if err != nil {
		t.Fatalf("StartPushgateway: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// httpClient returns a client whose keep-alive connections are closed when
// the test ends, so goleak sees no lingering connection goroutines.
func httpClient(t *testing.T) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

func do(t *testing.T, c *http.Client, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

func TestPushgatewayPushAndGet(t *testing.T) {
	tests := []struct {
		name       string
		noCheck    bool
		wantStatus int
	}{
		{name: "consistency check on", wantStatus: http.StatusOK},
		{name: "consistency check off", noCheck: true, wantStatus: http.StatusAccepted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startPushgateway(t, embedded.PushgatewayOptions{DisableConsistencyCheck: tc.noCheck})
			c := httpClient(t)

			for _, path := range []string{"/-/healthy", "/-/ready"} {
				if code, body := do(t, c, http.MethodGet, p.URL()+path, "", ""); code != http.StatusOK {
					t.Errorf("GET %s = %d %q, want 200", path, code, body)
				}
			}

			code, body := do(t, c, http.MethodPut, p.URL()+"/metrics/job/j/instance/i",
				"text/plain; version=0.0.4", "# TYPE demo_value gauge\ndemo_value 42\n")
			if code != tc.wantStatus {
				t.Fatalf("PUT = %d %q, want %d", code, body, tc.wantStatus)
			}

			// With the check off the store applies the write after
			// answering, so poll.
			want := `demo_value{instance="i",job="j"} 42`
			waitFor(t, "pushed sample in GET /metrics", func() bool {
				_, body := do(t, c, http.MethodGet, p.URL()+"/metrics", "", "")
				return strings.Contains(body, want)
			})

			_, body = do(t, c, http.MethodGet, p.URL()+"/api/v1/metrics", "", "")
			var api struct {
				Status string `json:"status"`
				Data   []struct {
					Labels map[string]string `json:"labels"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(body), &api); err != nil {
				t.Fatalf("GET /api/v1/metrics: %v in %q", err, body)
			}
			if api.Status != "success" || len(api.Data) != 1 ||
				api.Data[0].Labels["job"] != "j" || api.Data[0].Labels["instance"] != "i" {
				t.Errorf("GET /api/v1/metrics = %s, want one group job=j instance=i", body)
			}
		})
	}
}

func TestPushgatewayListen(t *testing.T) {
	port := freePort(t)
	tests := []struct {
		name    string
		listen  string
		wantURL string
	}{
		{name: "default", wantURL: "http://127.0.0.1:"},
		{name: "fixed port", listen: "127.0.0.1:" + strconv.Itoa(port), wantURL: "http://127.0.0.1:" + strconv.Itoa(port)},
		{name: "all interfaces", listen: ":0", wantURL: "http://127.0.0.1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startPushgateway(t, embedded.PushgatewayOptions{Listen: tc.listen})
			if !strings.HasPrefix(p.URL(), tc.wantURL) {
				t.Errorf("URL() = %q, want prefix %q", p.URL(), tc.wantURL)
			}
			if code, _ := do(t, httpClient(t), http.MethodGet, p.URL()+"/-/ready", "", ""); code != http.StatusOK {
				t.Errorf("GET /-/ready = %d, want 200", code)
			}
		})
	}
}

func TestPushgatewayListenBusy(t *testing.T) {
	p := startPushgateway(t, embedded.PushgatewayOptions{})
	busy := strings.TrimPrefix(p.URL(), "http://")
	if q, err := embedded.StartPushgateway(embedded.PushgatewayOptions{Listen: busy}); err == nil {
		_ = q.Close(context.Background())
		t.Fatalf("StartPushgateway on busy %s succeeded", busy)
	}
}

func TestPushgatewayCloseTwice(t *testing.T) {
	p, err := embedded.StartPushgateway(embedded.PushgatewayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
