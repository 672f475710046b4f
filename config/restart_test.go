package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestRestartKeys(t *testing.T) {
	const base = `identity: dc1
scrape_interval: 10s
max_age: 1m
monitor_port: 9100
poller_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}
receiver_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}
push_gateway: {url: 'http://pg:9091'}
jobs:
  node:
    targets: [{url: 'http://a:9100/metrics'}]
`
	tests := []restartCase{
		{"no change", "", "", nil, nil},
		{"same meaning written differently", "scrape_interval: 10s", "scrape_interval: 10000ms", nil, nil},
		{"target added", "targets: [{url: 'http://a:9100/metrics'}]", "targets: [{url: 'http://a:9100/metrics'}, {url: 'http://b:9100/metrics'}]", nil, nil},
		{"job HTTP client settings", "  node:\n", "  node:\n    follow_redirects: false\n", nil, nil},
		{"file_sd added", "  node:\n", "  node:\n    file_sd_configs: [{files: [/t/a.yml]}]\n", nil, nil},
		{"scrape_interval: live for the poller, max_age follows it for neither", "scrape_interval: 10s", "scrape_interval: 20s", nil, nil},
		{"identity", "identity: dc1", "identity: dc2", []string{"identity"}, []string{"identity"}},
		{"poller stream", "poller_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}", "poller_stream: {cluster_id: d, urls: 'nats://b:4222', topic: t}", []string{"poller_stream.cluster_id", "poller_stream.urls"}, nil},
		{"receiver stream", "receiver_stream: {cluster_id: c,", "receiver_stream: {ack_wait: 1m, cluster_id: c,", nil, []string{"receiver_stream.ack_wait"}},
		{"push gateway url", "url: 'http://pg:9091'", "url: 'http://pg2:9091'", nil, []string{"push_gateway.url"}},
		{"push gateway down_after", "url: 'http://pg:9091'", "url: 'http://pg:9091', down_after: 10m", nil, nil},
		{"push gateway client settings", "url: 'http://pg:9091'", "url: 'http://pg:9091', follow_redirects: false", nil, []string{"push_gateway"}},
		{"max_age", "max_age: 1m", "max_age: 2m", nil, nil},
		{"publishers", "identity: dc1", "identity: dc1\npublishers: {dc1: []}", nil, nil},
		{"monitor and logging", "monitor_port: 9100", "monitor_port: 9101\nlog_format: json\nmonitor_pprof: true", []string{"log_format", "monitor_port", "monitor_pprof"}, []string{"log_format", "monitor_port", "monitor_pprof"}},
		{"compression", "identity: dc1", "identity: dc1\ncompression: zstd", []string{"compression"}, nil},
		{"global tls", "identity: dc1", "identity: dc1\ntls: {scheme: file, ca: /ca.pem, cert: /c.pem, key: /k.pem}", []string{"tls"}, []string{"tls"}},
		{"management is ignored", "identity: dc1", "identity: dc1\nmanagement: {identity: x}", nil, nil},
	}
	checkRestartKeys(t, base, tests)
}

// restartCase is a change to a base file and the keys each role must
// restart for.
type restartCase struct {
	name         string
	from, to     string // replace from with to in base
	poller, recv []string
}

// checkRestartKeys runs RestartKeys between base and each case's edit of it.
func checkRestartKeys(t *testing.T, base string, tests []restartCase) {
	t.Helper()
	old := mustParse(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := base
			if tt.from != "" {
				if !strings.Contains(base, tt.from) {
					t.Fatalf("base has no %q", tt.from)
				}
				input = strings.Replace(base, tt.from, tt.to, 1)
			}
			c := mustParse(t, input)
			if got := RestartKeys(old, c, RolePoller); !reflect.DeepEqual(got, tt.poller) {
				t.Errorf("poller: got %q, want %q", got, tt.poller)
			}
			if got := RestartKeys(old, c, RoleReceiver); !reflect.DeepEqual(got, tt.recv) {
				t.Errorf("receiver: got %q, want %q", got, tt.recv)
			}
		})
	}
}
