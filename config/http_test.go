package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	commoncfg "github.com/prometheus/common/config"
)

func TestHTTPClientV1Unchanged(t *testing.T) {
	// A 1.0 file has no HTTP client settings: it parses as before, with
	// prometheus/common's defaults and nothing for the poller to build.
	for _, path := range []string{filepath.Join("testdata", "v1.yaml"), filepath.Join("testdata", "full.yaml")} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.PushGateway.HTTPClientConfig; !reflect.DeepEqual(got, commoncfg.DefaultHTTPClientConfig) {
				t.Errorf("push_gateway HTTP client = %+v, want the defaults", got)
			}
			for _, tg := range c.Targets() {
				if tg.HTTPClient != nil {
					t.Errorf("target %s/%s HTTP client = %+v, want nil (defaults)", tg.Job, tg.Name, tg.HTTPClient)
				}
			}
			if c.MonitorWebConfig != "" {
				t.Errorf("monitor_web_config = %q, want none", c.MonitorWebConfig)
			}
		})
	}
}

func TestHTTPClientErrors(t *testing.T) {
	const pg = "push_gateway:\n  url: http://pg:9091\n"
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{
			name:    "basic_auth password and password_file",
			input:   pg + "  basic_auth:\n    username: u\n    password: p\n    password_file: pw\n",
			wantErr: "config.yaml:3: push_gateway.basic_auth: at most one of basic_auth password, password_file & password_ref must be configured",
		},
		{
			name:    "basic_auth password and password_file in a job",
			input:   "jobs:\n  node:\n    targets: [{url: 'http://n:9100/metrics'}]\n    basic_auth: {username: u, password: p, password_file: pw}\n",
			wantErr: "config.yaml:4: jobs.node.basic_auth: at most one of basic_auth password, password_file & password_ref must be configured",
		},
		{
			name:    "unknown key inside basic_auth",
			input:   pg + "  basic_auth:\n    username: u\n    token: p\n",
			wantErr: "config.yaml:5: push_gateway.basic_auth.token: field token not found in type config.plain",
		},
		{
			name:    "basic_auth and authorization",
			input:   pg + "  authorization: {credentials: t}\n  basic_auth: {username: u}\n",
			wantErr: "config.yaml:4: push_gateway.basic_auth: at most one of basic_auth, oauth2 & authorization must be configured",
		},
		{
			name:    "authorization type basic",
			input:   pg + "  authorization: {type: Basic, credentials: t}\n",
			wantErr: `config.yaml:3: push_gateway.authorization: authorization type cannot be set to "basic", use "basic_auth" instead`,
		},
		{
			name:    "tls_config ca and ca_file",
			input:   pg + "  tls_config:\n    ca: x\n    ca_file: ca.pem\n",
			wantErr: "config.yaml:3: push_gateway.tls_config: at most one of ca, ca_file & ca_ref must be configured",
		},
		{
			name:    "tls_config cert without key",
			input:   "jobs:\n  node:\n    tls_config: {cert_file: c.pem}\n    targets: [{url: 'https://n:9100/metrics'}]\n",
			wantErr: "config.yaml:3: jobs.node.tls_config.cert_file: exactly one of key or key_file must be configured when a client certificate is configured",
		},
		{
			name:    "unknown min_version",
			input:   pg + "  tls_config:\n    min_version: TLS99\n",
			wantErr: "config.yaml:4: push_gateway.tls_config.min_version: unknown TLS version: TLS99",
		},
		{
			name:    "wrong type in tls_config",
			input:   pg + "  tls_config:\n    insecure_skip_verify: maybe\n",
			wantErr: "config.yaml:4: push_gateway.tls_config.insecure_skip_verify: cannot unmarshal !!str `maybe` into bool",
		},
		{
			name:    "tls_config as a scalar",
			input:   pg + "  tls_config: yes\n",
			wantErr: "config.yaml:3: push_gateway.tls_config: cannot unmarshal !!str `yes` into config.plain",
		},
		{
			name:    "reserved header",
			input:   pg + "  http_headers:\n    User-Agent: {values: [x]}\n",
			wantErr: `config.yaml:3: push_gateway.http_headers: setting header "User-Agent" is not allowed`,
		},
		{
			name:    "unknown key in a header",
			input:   pg + "  http_headers:\n    X-Team: {value: [x]}\n",
			wantErr: "config.yaml:4: push_gateway.http_headers.X-Team: field value not found in type config.Header",
		},
		{
			name:    "proxy_connect_header without a proxy",
			input:   pg + "  proxy_connect_header: {X-A: [b]}\n",
			wantErr: "config.yaml:3: push_gateway.proxy_connect_header: if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured",
		},
		{
			name:    "oauth2 without token_url",
			input:   "jobs:\n  node:\n    targets: [{url: 'http://n:9100/metrics'}]\n    oauth2:\n      client_id: c\n",
			wantErr: "config.yaml:4: jobs.node.oauth2: oauth2 token_url must be configured",
		},
		{
			name:    "proxy_url that does not parse",
			input:   pg + "  proxy_url: 'http://[::1'\n",
			wantErr: `config.yaml:3: push_gateway.proxy_url: parse "http://[::1": missing ']' in host`,
		},
		{
			name:    "unknown key next to the HTTP client settings",
			input:   pg + "  follow_redirect: false\n",
			wantErr: "config.yaml:3: push_gateway.follow_redirect: field follow_redirect not found in type config.plain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.input), "config.yaml")
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestHTTPClientValues(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "prometheus-streams.yaml")
	input := `identity: me
monitor_port: 9100
monitor_web_config: web.yml
push_gateway:
  url: https://pg:9091
  follow_redirects: false
  tls_config:
    ca_file: certs/ca.pem
    cert_file: /etc/pki/client.pem
    key_file: client.key
    server_name: pg.example.net
  basic_auth:
    username: receiver
    password_file: secrets/pg-password
jobs:
  node:
    targets: [{url: 'https://n1:9100/metrics'}, {url: 'https://n2:9100/metrics'}]
    bearer_token_file: node.token
    tls_config: {insecure_skip_verify: true}
    proxy_url: http://proxy:3128
  prometheus_streams:
    basic_auth: {username: self, password: s3cret}
`
	if err := os.WriteFile(file, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q (a self-scrape job without targets of its own is not one)", c.Warnings)
	}
	pg := c.PushGateway.HTTPClientConfig
	targets := c.Targets()
	byName := map[string]Target{}
	for _, tg := range targets {
		byName[tg.Name] = tg
	}
	node := byName["n1:9100"].HTTPClient
	if node == nil || byName["n2:9100"].HTTPClient != node {
		t.Fatalf("the node job's targets must share its HTTP client settings: %v", targets)
	}
	self := byName["me"].HTTPClient
	if self == nil {
		t.Fatalf("the self-scrape target has no HTTP client settings: %v", targets)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"relative ca_file", pg.TLSConfig.CAFile, filepath.Join(dir, "certs", "ca.pem")},
		{"absolute cert_file kept", pg.TLSConfig.CertFile, "/etc/pki/client.pem"},
		{"relative key_file", pg.TLSConfig.KeyFile, filepath.Join(dir, "client.key")},
		{"server_name", pg.TLSConfig.ServerName, "pg.example.net"},
		{"relative password_file", pg.BasicAuth.PasswordFile, filepath.Join(dir, "secrets", "pg-password")},
		{"follow_redirects set", pg.FollowRedirects, false},
		{"enable_http2 default", pg.EnableHTTP2, true},
		{"bearer_token_file becomes authorization", node.Authorization, &commoncfg.Authorization{Type: "Bearer", CredentialsFile: filepath.Join(dir, "node.token")}},
		{"job follow_redirects default", node.FollowRedirects, true},
		{"job insecure_skip_verify", node.TLSConfig.InsecureSkipVerify, true},
		{"job proxy_url", node.ProxyURL.String(), "http://proxy:3128"},
		{"self-scrape basic_auth", self.BasicAuth, &commoncfg.BasicAuth{Username: "self", Password: "s3cret"}},
		{"monitor_web_config", c.MonitorWebConfig, filepath.Join(dir, "web.yml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestMonitorWebConfig(t *testing.T) {
	tests := []struct {
		name         string
		input        string
		want         string
		wantWarnings []string
	}{
		{"absolute", "monitor_port: 9100\nmonitor_web_config: /etc/ps/web.yml\n", "/etc/ps/web.yml", nil},
		{"relative to the file", "monitor_port: 9100\nmonitor_web_config: web.yml\n", filepath.Join("conf", "web.yml"), nil},
		{"without monitor_port", "monitor_web_config: /etc/ps/web.yml\n", "/etc/ps/web.yml", []string{
			"conf/config.yaml:2: monitor_web_config: ignored: monitor_port is 0, so there is no monitor endpoint",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("identity: me\n"+strings.TrimSpace(tt.input)+"\n"), filepath.Join("conf", "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if c.MonitorWebConfig != tt.want {
				t.Errorf("monitor_web_config = %q, want %q", c.MonitorWebConfig, tt.want)
			}
			if !reflect.DeepEqual(c.Warnings, tt.wantWarnings) {
				t.Errorf("warnings = %q, want %q", c.Warnings, tt.wantWarnings)
			}
		})
	}
}
