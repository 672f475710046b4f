package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// puppetSSLDir builds a throwaway CA and a client certificate for identity
// in Puppet's layout under a temporary ssl_dir, and returns the directory.
func puppetSSLDir(t *testing.T, identity string) string {
	t.Helper()
	dir := t.TempDir()
	ca := testenv.NewCA(t, "test ca")
	ca.WritePuppet(t, dir, identity, ca.Issue(t, testenv.CertOptions{CommonName: identity, Client: true}))
	return dir
}

func TestTLSClientConfig(t *testing.T) {
	const id = "prom.example.net"
	dir := puppetSSLDir(t, id)
	ca := filepath.Join(dir, "certs", "ca.pem")
	cert := filepath.Join(dir, "certs", id+".pem")
	key := filepath.Join(dir, "private_keys", id+".pem")
	otherKey := testenv.WriteFile(t, filepath.Join(dir, "other.pem"), testenv.SelfSigned(t, testenv.CertOptions{CommonName: "other"}).KeyPEM)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		tls       string // the tls section, one flow mapping
		wantRoots bool
		wantCerts int
		wantErr   string
	}{
		{name: "puppet layout", tls: "{scheme: puppet, ssl_dir: '" + dir + "', identity: " + id + "}", wantRoots: true, wantCerts: 1},
		{name: "puppet identity from the top level", tls: "{scheme: puppet, ssl_dir: '" + dir + "'}", wantRoots: true, wantCerts: 1},
		{name: "file", tls: "{scheme: file, ca: '" + ca + "', cert: '" + cert + "', key: '" + key + "'}", wantRoots: true, wantCerts: 1},
		{name: "manual without client cert", tls: "{scheme: manual, ca: '" + ca + "'}", wantRoots: true},
		{name: "file with system roots", tls: "{scheme: file}"},
		{
			name: "puppet identity without files", tls: "{scheme: puppet, ssl_dir: '" + dir + "', identity: other}",
			wantErr: "tls: read cert: open " + filepath.Join(dir, "certs", "other.pem") + ": no such file or directory",
		},
		{
			name: "missing ca", tls: "{scheme: file, ca: '" + dir + "/none.pem'}",
			wantErr: "tls: read ca: open " + dir + "/none.pem: no such file or directory",
		},
		{
			name: "ca without PEM", tls: "{scheme: file, ca: '" + notPEM + "'}",
			wantErr: "tls: ca " + notPEM + ": no PEM certificate found",
		},
		{
			name: "key of another cert", tls: "{scheme: file, cert: '" + cert + "', key: '" + otherKey + "'}",
			wantErr: "tls: cert " + cert + " with key " + otherKey + ": tls: private key does not match public key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, "identity: "+id+"\nreceiver_stream:\n  tls: "+tt.tls+"\n")
			got, err := c.StreamTLS(RoleReceiver).ClientConfig()
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			if (got.RootCAs != nil) != tt.wantRoots {
				t.Errorf("RootCAs set = %v, want %v", got.RootCAs != nil, tt.wantRoots)
			}
			if len(got.Certificates) != tt.wantCerts {
				t.Errorf("%d certificates, want %d", len(got.Certificates), tt.wantCerts)
			}
		})
	}
}

func TestTLSFiles(t *testing.T) {
	tests := []struct {
		name                 string
		tls                  TLSConfig
		wantCA, wantC, wantK string
	}{
		{"puppet", TLSConfig{Scheme: SchemePuppet, SSLDir: "/ssl", Identity: "n1"}, "/ssl/certs/ca.pem", "/ssl/certs/n1.pem", "/ssl/private_keys/n1.pem"},
		{"file", TLSConfig{Scheme: SchemeFile, CA: "a", Cert: "b", Key: "c"}, "a", "b", "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cert, key := tt.tls.Files()
			if ca != tt.wantCA || cert != tt.wantC || key != tt.wantK {
				t.Errorf("got %q %q %q", ca, cert, key)
			}
		})
	}
}

func TestTLSNil(t *testing.T) {
	var none *TLSConfig
	got, err := none.ClientConfig()
	if got != nil || err != nil {
		t.Errorf("got %v, %v; want nil, nil", got, err)
	}
}
