package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePEM writes one PEM block to path, creating its directory.
func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newKey returns a fresh key and its PKCS#8 encoding.
func newKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// puppetSSLDir builds a throwaway CA and a client certificate for identity
// in Puppet's layout under a temporary ssl_dir, and returns the directory.
func puppetSSLDir(t *testing.T, identity string) string {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, leafKeyDER := newKey(t)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: identity},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "certs", "ca.pem"), "CERTIFICATE", caDER)
	writePEM(t, filepath.Join(dir, "certs", identity+".pem"), "CERTIFICATE", leafDER)
	writePEM(t, filepath.Join(dir, "private_keys", identity+".pem"), "PRIVATE KEY", leafKeyDER)
	return dir
}

func TestTLSClientConfig(t *testing.T) {
	const id = "prom.example.net"
	dir := puppetSSLDir(t, id)
	ca := filepath.Join(dir, "certs", "ca.pem")
	cert := filepath.Join(dir, "certs", id+".pem")
	key := filepath.Join(dir, "private_keys", id+".pem")
	_, otherKeyDER := newKey(t)
	otherKey := filepath.Join(dir, "other.pem")
	writePEM(t, otherKey, "PRIVATE KEY", otherKeyDER)
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
