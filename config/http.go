package config

import (
	"path/filepath"
	"strings"

	commoncfg "github.com/prometheus/common/config"
)

// httpClientKeys are the keys of prometheus/common's HTTP client settings
// that its Validate messages are about, each with what the message says of
// it; bearer_token_file comes before bearer_token, which it contains.
var httpClientKeys = []struct{ mention, key string }{
	{"basic_auth", "basic_auth"},
	{"authorization", "authorization"},
	{"oauth2", "oauth2"},
	{"bearer_token_file", "bearer_token_file"},
	{"bearer_token", "bearer_token"},
	{"proxy_connect_header", "proxy_connect_header"},
	{"proxy_url", "proxy_url"},
	{"setting header", "http_headers"},
}

// checkHTTPClient validates the HTTP client settings inlined at p
// (push_gateway or a job) as prometheus/common does when it decodes them
// itself, and resolves their relative file paths (ca_file, password_file,
// credentials_file...) against the configuration file's directory, as
// Prometheus does. An error is placed at the first setting its message
// names that the file sets, else at p.
func checkHTTPClient(k *checker, p keyPath, hc *commoncfg.HTTPClientConfig) {
	if err := hc.Validate(); err != nil {
		at := p
		for _, m := range httpClientKeys {
			if strings.Contains(err.Error(), m.mention) && k.explicit(p.with(m.key)) {
				at = p.with(m.key)
				break
			}
		}
		k.errorf(at, "%w", err)
	}
	hc.SetDirectory(configDir(k.c.filename))
}

// configDir is the directory relative paths in the file are resolved
// against: the file's own.
func configDir(filename string) string {
	return filepath.Dir(filename)
}

// checkMonitorWeb resolves monitor_web_config against the configuration
// file's directory. The file itself is read when the monitor starts, as
// the TLS files are, so that it may be provisioned after the configuration.
func (c *Config) checkMonitorWeb(k *checker) {
	if c.MonitorWebConfig == "" {
		return
	}
	c.MonitorWebConfig = commoncfg.JoinDir(configDir(c.filename), c.MonitorWebConfig)
	if c.MonitorPort <= 0 {
		k.warnf(keyPath{"monitor_web_config"}, "ignored: monitor_port is 0, so there is no monitor endpoint")
	}
}
