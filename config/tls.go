package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TLS schemes accepted by tls.scheme. SchemeFile and SchemeManual mean the
// same (1.0 accepted both names).
const (
	SchemePuppet = "puppet"
	SchemeFile   = "file"
	SchemeManual = "manual"
)

// DefaultPuppetSSLDir is ssl_dir for the puppet scheme when unset: Puppet's
// own directory when run as root, which Choria's puppet provider used.
const DefaultPuppetSSLDir = "/etc/puppetlabs/puppet/ssl"

// TLSConfig is a tls section: global, per stream, or under management.
type TLSConfig struct {
	// Identity names the certificate under the puppet scheme. Default: the
	// top-level identity.
	Identity string `yaml:"identity,omitempty"`
	// SSLDir is Puppet's SSL directory (puppet scheme).
	SSLDir string `yaml:"ssl_dir,omitempty"`
	// Scheme is SchemePuppet, SchemeFile or SchemeManual; required.
	Scheme string `yaml:"scheme,omitempty"`
	// CA, Cert and Key are PEM files (file and manual schemes). CA is
	// optional (system roots); Cert and Key go together.
	CA   string `yaml:"ca,omitempty"`
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
	// Cache is accepted for 1.0 compatibility and ignored.
	Cache string `yaml:"cache,omitempty"`
}

// check validates t, applying its identity and ssl_dir defaults. It runs
// for the global and stream sections, not for management's (ignored).
func (t *TLSConfig) check(k *checker, p keyPath, identity string) {
	if t.Identity == "" {
		t.Identity = identity
	}
	switch t.Scheme {
	case SchemePuppet:
		if t.SSLDir == "" {
			t.SSLDir = DefaultPuppetSSLDir
		}
		if strings.ContainsAny(t.Identity, `/\`) {
			k.errorf(p.with("identity"), "%q names a file under ssl_dir and must not contain a path separator", t.Identity)
		}
		for _, f := range [...]struct{ key, v string }{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
			if f.v != "" {
				k.warnf(p.with(f.key), "ignored with scheme puppet, which uses ssl_dir")
			}
		}
	case SchemeFile, SchemeManual:
		if (t.Cert == "") != (t.Key == "") {
			k.errorf(p, "cert and key must be set together")
		}
	case "":
		k.errorf(p.with("scheme"), "required: %s, %s or %s", SchemePuppet, SchemeFile, SchemeManual)
	default:
		k.errorf(p.with("scheme"), "must be %s, %s or %s, not %q", SchemePuppet, SchemeFile, SchemeManual, t.Scheme)
	}
	if t.Cache != "" {
		k.warnf(p.with("cache"), "ignored (1.0 used it for management only)")
	}
}

// Files returns the PEM files t uses. Under the puppet scheme they are
// ssl_dir/certs/ca.pem, ssl_dir/certs/<identity>.pem and
// ssl_dir/private_keys/<identity>.pem; otherwise ca, cert and key as given
// ("" when unset). A nil t has no files.
func (t *TLSConfig) Files() (ca, cert, key string) {
	if t == nil {
		return "", "", ""
	}
	if t.Scheme == SchemePuppet {
		return filepath.Join(t.SSLDir, "certs", "ca.pem"),
			filepath.Join(t.SSLDir, "certs", t.Identity+".pem"),
			filepath.Join(t.SSLDir, "private_keys", t.Identity+".pem")
	}
	return t.CA, t.Cert, t.Key
}

// ClientConfig loads the files and returns a client *tls.Config: RootCAs
// from the CA file (nil, meaning the system roots, when there is none) and
// the client certificate when cert and key are set. A nil t returns nil,
// nil: no TLS configured. Errors name the file that failed. The files are
// read on every call; the daemons call it once, at start.
func (t *TLSConfig) ClientConfig() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	ca, cert, key := t.Files()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca %s: no PEM certificate found", ca)
		}
		cfg.RootCAs = pool
	}
	if cert == "" && key == "" {
		return cfg, nil
	}
	if cert == "" || key == "" {
		return nil, errors.New("tls: cert and key must be set together")
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		return nil, fmt.Errorf("tls: read cert: %w", err)
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		return nil, fmt.Errorf("tls: read key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: cert %s with key %s: %w", cert, key, err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}
