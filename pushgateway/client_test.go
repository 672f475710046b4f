package pushgateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// TestMain fails the package if a goroutine (an HTTP connection, a
// Pushgateway store loop) outlives the tests. No library goroutine needed
// to be ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	contentTypeText  = "text/plain; version=0.0.4; charset=utf-8"
	contentTypeProto = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
	waitTimeout      = 10 * time.Second
)

func startGateway(t *testing.T, disableCheck bool) *embedded.Pushgateway {
	t.Helper()
	return testenv.Pushgateway(t, embedded.PushgatewayOptions{DisableConsistencyCheck: disableCheck})
}

func newClient(t *testing.T, opts pushgateway.Options) *pushgateway.Client {
	t.Helper()
	c, err := pushgateway.New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// get fetches url from the gateway with a client closed at test end.
func get(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// groups returns the grouping labels of every group the gateway holds,
// from its /api/v1/metrics.
func groups(t *testing.T, gw *embedded.Pushgateway) []map[string]string {
	t.Helper()
	var api struct {
		Data []struct {
			Labels map[string]string `json:"labels"`
		} `json:"data"`
	}
	body := get(t, gw.URL()+"/api/v1/metrics")
	if err := json.Unmarshal([]byte(body), &api); err != nil {
		t.Fatalf("decode /api/v1/metrics: %v", err)
	}
	out := make([]map[string]string, 0, len(api.Data))
	for _, d := range api.Data {
		out = append(out, d.Labels)
	}
	return out
}

func hasGroup(t *testing.T, gw *embedded.Pushgateway, want map[string]string) bool {
	t.Helper()
	for _, g := range groups(t, gw) {
		if reflect.DeepEqual(g, want) {
			return true
		}
	}
	return false
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

func TestPushNodeExporter(t *testing.T) {
	tests := []struct {
		name        string
		file        string
		contentType string
	}{
		{name: "text", file: "../testdata/node_exporter.prom", contentType: contentTypeText},
		{name: "protobuf", file: "../testdata/node_exporter.pb", contentType: contentTypeProto},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := startGateway(t, false)
			c := newClient(t, pushgateway.Options{URL: gw.URL()})
			key := pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{
				{Name: "instance", Value: "host-1:9100"}, {Name: "publisher", Value: "dc1"},
			}}
			if err := c.Push(t.Context(), key, tc.contentType, readFile(t, tc.file)); err != nil {
				t.Fatalf("Push: %v", err)
			}
			want := map[string]string{"job": "node", "instance": "host-1:9100", "publisher": "dc1"}
			if !hasGroup(t, gw, want) {
				t.Errorf("/api/v1/metrics groups = %v, want %v", groups(t, gw), want)
			}
			metrics := get(t, gw.URL()+"/metrics")
			for _, line := range []string{
				`node_load1{instance="host-1:9100",job="node",publisher="dc1"} `,
				`push_time_seconds{instance="host-1:9100",job="node",publisher="dc1"} `,
			} {
				if !strings.Contains(metrics, line) {
					t.Errorf("GET /metrics lacks %q", line)
				}
			}
		})
	}
}

func TestLabelValuesRoundTrip(t *testing.T) {
	gw := startGateway(t, false)
	c := newClient(t, pushgateway.Options{URL: gw.URL()})
	tests := []struct {
		name  string
		job   string
		value string
	}{
		{name: "plain", job: "rt", value: "host-1.example.com:9100"},
		{name: "slash", job: "rt", value: "/var/tmp"},
		{name: "dot", job: "rt", value: "."},
		{name: "dot dot", job: "rt", value: ".."},
		{name: "dot dot slash", job: "rt", value: "../../etc"},
		{name: "empty", job: "rt", value: ""},
		{name: "unicode", job: "rt", value: "Προμηθεύς 🔥"},
		{name: "url specials", job: "rt", value: "a b?c#d%2Fe&f=g+h"},
		{name: "job with slash", job: "a/b", value: "i"},
		{name: "unicode job", job: "jöb", value: "i"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// case keeps every group distinct, also when value is empty.
			caseID := fmt.Sprint(i)
			key := pushgateway.GroupingKey{Job: tc.job, Labels: []pushgateway.Label{
				{Name: "instance", Value: tc.value}, {Name: "case", Value: caseID},
			}}
			if err := c.Push(t.Context(), key, contentTypeText, []byte("rt_value 1\n")); err != nil {
				t.Fatalf("Push %s: %v", key.Path(), err)
			}
			want := map[string]string{"job": tc.job, "instance": tc.value, "case": caseID}
			if !hasGroup(t, gw, want) {
				t.Errorf("after PUT %s, groups = %v, want one equal to %v", key.Path(), groups(t, gw), want)
			}
		})
	}
}

func TestPushRefused(t *testing.T) {
	key := func(job string) pushgateway.GroupingKey {
		return pushgateway.GroupingKey{Job: job, Labels: []pushgateway.Label{{Name: "instance", Value: "i"}}}
	}
	type push struct {
		key  pushgateway.GroupingKey
		body string
	}
	tests := []struct {
		name         string
		disableCheck bool
		before       []push
		push         push
		wantReason   string // "" = the push succeeds
	}{
		{
			name:       "sample timestamp",
			push:       push{key("ts"), "ts_value 1 1700000000000\n"},
			wantReason: "pushed metrics must not have timestamps",
		},
		{
			// Quirk: without the check the gateway answers 202 and then
			// drops the push, setting push_failure_time_seconds.
			name:         "sample timestamp, check off",
			disableCheck: true,
			push:         push{key("ts"), "ts_value 1 1700000000000\n"},
		},
		{
			name:       "type clash across groups",
			before:     []push{{key("a"), "# TYPE clash counter\nclash 1\n"}},
			push:       push{key("b"), "# TYPE clash gauge\nclash 2\n"},
			wantReason: `collected metric "clash"`, // then "is not a GAUGE" or "COUNTER": the store iterates a map
		},
		{
			name:         "type clash across groups, check off",
			disableCheck: true,
			before:       []push{{key("a"), "# TYPE clash counter\nclash 1\n"}},
			push:         push{key("b"), "# TYPE clash gauge\nclash 2\n"},
		},
		{
			name:       "unparsable body",
			push:       push{key("bad"), "not a metric line at all {\n"},
			wantReason: "text format parsing error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := startGateway(t, tc.disableCheck)
			c := newClient(t, pushgateway.Options{URL: gw.URL()})
			for _, p := range tc.before {
				if err := c.Push(t.Context(), p.key, contentTypeText, []byte(p.body)); err != nil {
					t.Fatalf("setup push %s: %v", p.key, err)
				}
			}
			err := c.Push(t.Context(), tc.push.key, contentTypeText, []byte(tc.push.body))
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Push: %v, want success", err)
				}
				return
			}
			var se *pushgateway.Error
			if !errors.As(err, &se) {
				t.Fatalf("Push error = %v, want an *Error", err)
			}
			if se.Code != http.StatusBadRequest || !strings.Contains(se.Reason, tc.wantReason) {
				t.Errorf("Error = %d %q, want 400 containing %q", se.Code, se.Reason, tc.wantReason)
			}
			if se.Method != http.MethodPut || se.Path != tc.push.key.Path() {
				t.Errorf("Error names %s %s, want PUT %s", se.Method, se.Path, tc.push.key.Path())
			}
			if !strings.Contains(err.Error(), tc.wantReason) {
				t.Errorf("error text %q does not surface the reason", err)
			}
			if pushgateway.Retryable(err) {
				t.Errorf("Retryable(%v) = true, want false", err)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	gw := startGateway(t, false)
	c := newClient(t, pushgateway.Options{URL: gw.URL()})
	key := pushgateway.GroupingKey{Job: "del", Labels: []pushgateway.Label{{Name: "instance", Value: "/x"}}}
	if err := c.Push(t.Context(), key, contentTypeText, []byte("del_value 1\n")); err != nil {
		t.Fatalf("Push: %v", err)
	}
	want := map[string]string{"job": "del", "instance": "/x"}
	if !hasGroup(t, gw, want) {
		t.Fatalf("group %v missing after push", want)
	}
	if err := c.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// The gateway answers 202 and applies the delete asynchronously.
	waitFor(t, "the group to go", func() bool { return !hasGroup(t, gw, want) })
	if err := c.Delete(t.Context(), key); err != nil {
		t.Errorf("Delete of a missing group: %v, want success", err)
	}
}

func TestInvalidKeyNotSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request %s %s sent for an invalid key", r.Method, r.URL.Path)
	}))
	defer srv.Close()
	c := newClient(t, pushgateway.Options{URL: srv.URL})
	bad := pushgateway.GroupingKey{Job: "", Labels: []pushgateway.Label{{Name: "instance", Value: "i"}}}
	for name, err := range map[string]error{
		"push":   c.Push(t.Context(), bad, contentTypeText, []byte("x 1\n")),
		"delete": c.Delete(t.Context(), bad),
	} {
		if !errors.Is(err, pushgateway.ErrInvalidGroupingKey) {
			t.Errorf("%s: %v, want ErrInvalidGroupingKey", name, err)
		}
	}
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		userAgent string
		wantUA    string
		wantErr   bool
	}{
		{name: "200", status: http.StatusOK, wantUA: pushgateway.DefaultUserAgent},
		{name: "202", status: http.StatusAccepted, userAgent: "ps/2.0", wantUA: "ps/2.0"},
		{name: "204", status: http.StatusNoContent, wantUA: pushgateway.DefaultUserAgent},
		{name: "302 is not success", status: http.StatusFound, wantUA: pushgateway.DefaultUserAgent, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct{ method, path, contentType, userAgent, body string }
			got := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.UserAgent(), string(b)}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()

			// Trailing slash and path prefix, as behind a reverse proxy.
			c := newClient(t, pushgateway.Options{URL: srv.URL + "/pgw/", UserAgent: tc.userAgent})
			key := pushgateway.GroupingKey{Job: "j", Labels: []pushgateway.Label{{Name: "instance", Value: "a/b"}}}
			err := c.Push(t.Context(), key, contentTypeProto, []byte("body"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Push: %v, wantErr %v", err, tc.wantErr)
			}
			want := seen{http.MethodPut, "/pgw/metrics/job/j/instance@base64/YS9i", contentTypeProto, tc.wantUA, "body"}
			if s := <-got; s != want {
				t.Errorf("server saw %+v, want %+v", s, want)
			}
		})
	}
}

func TestReasonCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "\n  "+strings.Repeat("x", 5000))
	}))
	defer srv.Close()
	c := newClient(t, pushgateway.Options{URL: srv.URL})
	err := c.Delete(t.Context(), pushgateway.GroupingKey{Job: "j"})
	var se *pushgateway.Error
	if !errors.As(err, &se) {
		t.Fatalf("Delete: %v, want an *Error", err)
	}
	if se.Code != http.StatusInternalServerError || se.Method != http.MethodDelete {
		t.Errorf("Error = %s %d, want DELETE 500", se.Method, se.Code)
	}
	if len(se.Reason) > 1024 || !strings.HasPrefix(se.Reason, "xxx") {
		t.Errorf("Reason has %d bytes starting %.5q, want at most 1024, trimmed", len(se.Reason), se.Reason)
	}
}

func TestRetryable(t *testing.T) {
	statusServer := func(t *testing.T, code int) string {
		t.Helper()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "answer", code)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	pushTo := func(t *testing.T, ctx context.Context, opts pushgateway.Options) error {
		t.Helper()
		c := newClient(t, opts)
		return c.Push(ctx, pushgateway.GroupingKey{Job: "j"}, contentTypeText, []byte("x 1\n"))
	}
	tests := []struct {
		name string
		err  func(t *testing.T) error
		want bool
	}{
		{name: "nil", err: func(*testing.T) error { return nil }, want: false},
		{name: "connection refused", want: true, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: "http://" + closedAddr(t)})
		}},
		{name: "500", want: true, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: statusServer(t, 500)})
		}},
		{name: "503", want: true, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: statusServer(t, 503)})
		}},
		{name: "429", want: true, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: statusServer(t, 429)})
		}},
		{name: "400", want: false, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: statusServer(t, 400)})
		}},
		{name: "404", want: false, err: func(t *testing.T) error {
			return pushTo(t, t.Context(), pushgateway.Options{URL: statusServer(t, 404)})
		}},
		{name: "client timeout", want: true, err: func(t *testing.T) error {
			url, _ := hangingServer(t)
			return pushTo(t, t.Context(), pushgateway.Options{URL: url, Timeout: 50 * time.Millisecond})
		}},
		{name: "context canceled", want: false, err: func(t *testing.T) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return pushTo(t, ctx, pushgateway.Options{URL: statusServer(t, 200)})
		}},
		{name: "context canceled in flight", want: false, err: func(t *testing.T) error {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			url, arrived := hangingServer(t)
			go func() {
				<-arrived
				cancel()
			}()
			return pushTo(t, ctx, pushgateway.Options{URL: url})
		}},
		{name: "invalid key", want: false, err: func(t *testing.T) error {
			c := newClient(t, pushgateway.Options{URL: statusServer(t, 200)})
			return c.Push(t.Context(), pushgateway.GroupingKey{}, contentTypeText, []byte("x 1\n"))
		}},
		{name: "bare deadline exceeded", want: true, err: func(*testing.T) error {
			return fmt.Errorf("push: %w", context.DeadlineExceeded)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if got := pushgateway.Retryable(err); got != tc.want {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// hangingServer never answers until the client gives up (or the test
// ends); arrived gets a value as a request comes in.
func hangingServer(t *testing.T) (url string, arrived <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// The server notices a client hanging up only once the
		// request body has been read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case ch <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv.URL, ch
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr bool
	}{
		{name: "plain", url: "http://127.0.0.1:9091"},
		{name: "https with prefix", url: "https://pgw.example.com/pgw/"},
		{name: "empty", url: "", wantErr: true},
		{name: "no scheme", url: "127.0.0.1:9091", wantErr: true},
		{name: "other scheme", url: "ftp://127.0.0.1:9091", wantErr: true},
		{name: "no host", url: "http:///metrics", wantErr: true},
		{name: "query", url: "http://127.0.0.1:9091/?a=b", wantErr: true},
		{name: "unparsable", url: "http://[::1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pushgateway.New(pushgateway.Options{URL: tc.url})
			if (err != nil) != tc.wantErr {
				t.Errorf("New(%q) = %v, wantErr %v", tc.url, err, tc.wantErr)
			}
		})
	}
}
