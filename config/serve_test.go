package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// serveWith returns DefaultServeConfig changed by edit, for the wants below.
func serveWith(edit func(*ServeConfig)) *ServeConfig {
	s := DefaultServeConfig
	edit(&s)
	return &s
}

func TestServeDefaults(t *testing.T) {
	defaults := DefaultServeConfig
	tests := []struct {
		name  string
		input string
		want  *ServeConfig
	}{
		{"off by default", "verbose: true\n", nil},
		{"off, explicitly", "serve_targets: false\n", nil},
		{"on without a section", "serve_targets: true\n", &defaults},
		{"on with a null section", "serve_targets: true\nserve:\n", &defaults},
		{"on with an empty section", "serve_targets: true\nserve: {}\n", &defaults},
		{"one key set, the others default", "serve_targets: true\nserve: {max_groups: 10}\n", serveWith(func(s *ServeConfig) { s.MaxGroups = 10 })},
		{"publisher_label off", "serve_targets: true\nserve: {publisher_label: false}\n", serveWith(func(s *ServeConfig) { s.PublisherLabel = false })},
		{
			"delete_after follows a max_age longer than 1h", "scrape_interval: 1h\nserve_targets: true\n",
			serveWith(func(s *ServeConfig) { s.DeleteAfter = Duration(2 * time.Hour) }),
		},
		{"delete_after equal to max_age", "max_age: 5m\nserve_targets: true\nserve: {delete_after: 5m}\n", serveWith(func(s *ServeConfig) { s.DeleteAfter = Duration(5 * time.Minute) })},
		{"address with an IPv6 host", "serve_targets: true\nserve: {address: '[::1]:9100'}\n", serveWith(func(s *ServeConfig) { s.Address = "[::1]:9100" })},
		{"https behind a load balancer", "serve_targets: true\nserve: {address: 'lb:443', scheme: https}\n", serveWith(func(s *ServeConfig) { s.Address, s.Scheme = "lb:443", "https" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.input)
			if !reflect.DeepEqual(c.Serve, tt.want) {
				t.Errorf("got %+v, want %+v", c.Serve, tt.want)
			}
			if c.Serve == &DefaultServeConfig {
				t.Error("Serve is DefaultServeConfig itself, not a copy")
			}
		})
	}
	if DefaultServeConfig != (ServeConfig{
		PublisherLabel: true, PublisherLabelName: "publisher", DeleteAfter: Duration(time.Hour), MaxGroups: 100000,
		MaxBytes: 1 << 30, MaxConcurrentScrapes: 64, WriteTimeout: Duration(10 * time.Second),
	}) {
		t.Errorf("DefaultServeConfig was modified: %+v", DefaultServeConfig)
	}
}

func TestServeFullSample(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &ServeConfig{
		Address: "receiver.dc2.example.net:443", Scheme: "https", PublisherLabel: false, PublisherLabelName: "dc",
		DeleteAfter: Duration(2 * time.Hour), MaxGroups: 5000, MaxBytes: 256 << 20, MaxConcurrentScrapes: 16,
		WriteTimeout: Duration(30 * time.Second),
	}
	if !c.ServeTargets || !reflect.DeepEqual(c.Serve, want) {
		t.Errorf("serve_targets %v, serve %+v, want true, %+v", c.ServeTargets, c.Serve, want)
	}
}

// TestServeParseErrors checks that every error of serve_targets and serve
// names the file, the line and the key.
func TestServeParseErrors(t *testing.T) {
	tests := []parseErrorCase{
		{"section without serve_targets", "verbose: true\nserve:\n  max_groups: 10\n", "config.yaml:2: serve: set serve_targets: true to serve targets, or remove the section"},
		{"section with serve_targets false", "serve_targets: false\nserve: {}\n", "config.yaml:2: serve: set serve_targets: true to serve targets, or remove the section"},
		{"serve_targets not a bool", "serve_targets: sometimes\n", "config.yaml:1: serve_targets: cannot unmarshal !!str `sometimes` into bool"},
		{"unknown key", "serve_targets: true\nserve:\n  max_group: 10\n", "config.yaml:3: serve.max_group: field max_group not found in type config.plain"},
		{"section not a mapping", "serve_targets: true\nserve: yes\n", "config.yaml:2: serve: cannot unmarshal !!str `yes` into config.plain"},
		{"address without a port", "serve_targets: true\nserve:\n  address: receiver.example.net\n", `config.yaml:3: serve.address: "receiver.example.net" is not host:port: missing port in address`},
		{"address without a host", "serve_targets: true\nserve:\n  address: ':443'\n", `config.yaml:3: serve.address: ":443" is not host:port: both the host and the port are required`},
		{"address with a scheme", "serve_targets: true\nserve:\n  address: 'http://r:443'\n", `config.yaml:3: serve.address: "http://r:443" is not host:port: too many colons in address`},
		{"label name invalid", "serve_targets: true\nserve:\n  publisher_label_name: a-b\n", `config.yaml:3: serve.publisher_label_name: "a-b" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{"scheme", "serve_targets: true\nserve:\n  scheme: ftp\n", `config.yaml:3: serve.scheme: "ftp" is neither http nor https`},
		{"label name reserved", "serve_targets: true\nserve:\n  publisher_label_name: __address__\n", `config.yaml:3: serve.publisher_label_name: "__address__" is reserved`},
		{"delete_after shorter than max_age", "max_age: 2h\nserve_targets: true\nserve:\n  delete_after: 1h\n", "config.yaml:4: serve.delete_after: 1h is shorter than max_age 2h"},
		{"delete_after 0", "serve_targets: true\nserve:\n  delete_after: 0\n", "config.yaml:3: serve.delete_after: 0s is shorter than max_age 2m"},
		{"max_groups 0", "serve_targets: true\nserve:\n  max_groups: 0\n", "config.yaml:3: serve.max_groups: must be greater than 0"},
		{"max_bytes 0", "serve_targets: true\nserve:\n  max_bytes: 0\n", "config.yaml:3: serve.max_bytes: must be greater than 0"},
		{"max_bytes bad unit", "serve_targets: true\nserve:\n  max_bytes: 1GB!\n", `config.yaml:3: serve.max_bytes: invalid size "1GB!": units: unknown unit GB! in 1GB!`},
		{"max_concurrent_scrapes negative", "serve_targets: true\nserve:\n  max_concurrent_scrapes: -1\n", "config.yaml:3: serve.max_concurrent_scrapes: must be greater than 0"},
		{"write_timeout 0", "serve_targets: true\nserve:\n  write_timeout: 0s\n", "config.yaml:3: serve.write_timeout: must be greater than 0"},
		{
			"several errors", "serve_targets: true\nserve:\n  max_groups: 0\n  write_timeout: 0\n",
			"config.yaml:3: serve.max_groups: must be greater than 0\nconfig.yaml:4: serve.write_timeout: must be greater than 0",
		},
	}
	checkParseErrors(t, tests)
}

// TestServeValidate covers the receiver's outputs: push_gateway,
// serve_targets, or both.
func TestServeValidate(t *testing.T) {
	const stream = "receiver_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}\n"
	tests := []struct {
		name    string
		input   string
		role    Role
		wantErr string
	}{
		{"serve only", stream + "monitor_port: 9100\nserve_targets: true\n", RoleReceiver, ""},
		{"push and serve", stream + "monitor_port: 9100\nserve_targets: true\npush_gateway: {url: 'http://pg:9091'}\n", RoleReceiver, ""},
		{"neither", stream, RoleReceiver, "config.yaml: push_gateway: required for the receiver, or serve_targets: true"},
		{"neither, serve_targets false", stream + "serve_targets: false\n", RoleReceiver, "config.yaml: push_gateway: required for the receiver, or serve_targets: true"},
		{"serve without monitor_port", stream + "serve_targets: true\n", RoleReceiver, "config.yaml:2: serve_targets: requires monitor_port: the targets and /sd are served on the monitor endpoint"},
		{"serve with monitor_port 0", stream + "monitor_port: 0\nserve_targets: true\n", RoleReceiver, "config.yaml:3: serve_targets: requires monitor_port: the targets and /sd are served on the monitor endpoint"},
		{
			"serving does not excuse a push_gateway without url", stream + "monitor_port: 9100\nserve_targets: true\npush_gateway:\n  timeout: 5s\n", RoleReceiver,
			"config.yaml:4: push_gateway.url: required for the receiver",
		},
		{
			"the poller ignores serve_targets", "poller_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}\nserve_targets: true\njobs: {j: {targets: [{url: 'http://a'}]}}\n", RolePoller,
			"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustParse(t, tt.input).Validate(tt.role), tt.wantErr)
		})
	}
}

func TestServeRestartKeys(t *testing.T) {
	const base = `max_age: 1m
monitor_port: 9100
receiver_stream: {cluster_id: c, urls: 'nats://a:4222', topic: t}
serve_targets: true
serve:
  max_groups: 10
`
	tests := []restartCase{
		{"no change", "", "", nil, nil},
		{"a default written out", "  max_groups: 10\n", "  max_groups: 10\n  write_timeout: 10s\n", nil, nil},
		{"delete_after is live", "  max_groups: 10\n", "  max_groups: 10\n  delete_after: 3h\n", nil, nil},
		{"max_age moves delete_after's default", "max_age: 1m", "max_age: 2h", nil, nil},
		{"address", "  max_groups: 10\n", "  max_groups: 10\n  address: r:443\n", nil, []string{"serve.address"}},
		{"publisher label", "  max_groups: 10\n", "  max_groups: 10\n  publisher_label: false\n  publisher_label_name: dc\n", nil, []string{"serve.publisher_label", "serve.publisher_label_name"}},
		{"limits", "  max_groups: 10\n", "  max_groups: 20\n  max_bytes: 1MiB\n  max_concurrent_scrapes: 1\n  write_timeout: 1s\n", nil, []string{"serve.max_groups", "serve.max_bytes", "serve.max_concurrent_scrapes", "serve.write_timeout"}},
		{"section removed, defaults kept", "serve:\n  max_groups: 10\n", "", nil, []string{"serve.max_groups"}},
		{"serving turned off", "serve_targets: true\nserve:\n  max_groups: 10\n", "push_gateway: {url: 'http://pg'}\n", nil, []string{"push_gateway", "serve_targets", "serve"}},
	}
	checkRestartKeys(t, base, tests)
}
