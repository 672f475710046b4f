package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test: an ECDSA P-256 key and a
// self-signed certificate valid from an hour ago to an hour from now.
type CA struct {
	// Cert is the CA's certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
	// PEM is Cert PEM-encoded, as a ca file holds it.
	PEM []byte
}

// CertOptions says what a certificate made by CA.Issue or SelfSigned is for.
type CertOptions struct {
	// CommonName is the subject's common name.
	CommonName string
	// DNSNames are the DNS subject alternative names.
	DNSNames []string
	// IPAddresses are the IP subject alternative names.
	IPAddresses []net.IP
	// Server makes the certificate usable for server authentication.
	Server bool
	// Client makes the certificate usable for client authentication.
	Client bool
}

// Cert is a certificate and its ECDSA P-256 key.
type Cert struct {
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// Key is the certificate's private key.
	Key *ecdsa.PrivateKey
	// CertPEM is Cert PEM-encoded ("CERTIFICATE").
	CertPEM []byte
	// KeyPEM is Key PEM-encoded as PKCS #8 ("PRIVATE KEY").
	KeyPEM []byte
}

// Loopback returns 127.0.0.1, the address the servers of the tests listen
// on, for CertOptions.IPAddresses.
func Loopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }

// NewCA makes a certificate authority whose certificate has the common name
// name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	cert := sign(t, tmpl, tmpl, key, key)
	return &CA{Cert: cert.Cert, Key: key, PEM: cert.CertPEM}
}

// Issue makes a fresh key and a certificate for it that ca signs.
func (ca *CA) Issue(t testing.TB, opts CertOptions) Cert {
	t.Helper()
	tmpl := leafTemplate(t, opts)
	return sign(t, tmpl, ca.Cert, newKey(t), ca.Key)
}

// Pool returns a pool that trusts ca, for tls.Config's RootCAs or
// ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Write writes ca's certificate as PEM to name (which may hold directories)
// under dir and returns its path.
func (ca *CA) Write(t testing.TB, dir, name string) string {
	t.Helper()
	return WriteFile(t, filepath.Join(dir, name), ca.PEM)
}

// WritePuppet writes ca and c for identity in the layout of the puppet TLS
// scheme under sslDir: certs/ca.pem, certs/<identity>.pem and
// private_keys/<identity>.pem.
func (ca *CA) WritePuppet(t testing.TB, sslDir, identity string, c Cert) {
	t.Helper()
	ca.Write(t, sslDir, filepath.Join("certs", "ca.pem"))
	c.Write(t, sslDir, filepath.Join("certs", identity+".pem"), filepath.Join("private_keys", identity+".pem"))
}

// SelfSigned makes a fresh key and a certificate for it that signs itself:
// a client trusts it by taking the certificate as its CA.
func SelfSigned(t testing.TB, opts CertOptions) Cert {
	t.Helper()
	tmpl := leafTemplate(t, opts)
	key := newKey(t)
	return sign(t, tmpl, tmpl, key, key)
}

// TLS returns c for tls.Config's Certificates.
func (c Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// Pool returns a pool that trusts c itself, for a self-signed certificate.
func (c Cert) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return pool
}

// Write writes c's certificate and key as PEM to certName and keyName
// (which may hold directories) under dir and returns their paths.
func (c Cert) Write(t testing.TB, dir, certName, keyName string) (certPath, keyPath string) {
	t.Helper()
	return WriteFile(t, filepath.Join(dir, certName), c.CertPEM), WriteFile(t, filepath.Join(dir, keyName), c.KeyPEM)
}

// WriteFile writes b to path with mode 0600, creating its directory, and
// returns path.
func WriteFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// template returns a certificate template for commonName with a random
// serial number, valid from an hour ago to an hour from now.
func template(t testing.TB, commonName string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

func leafTemplate(t testing.TB, opts CertOptions) *x509.Certificate {
	t.Helper()
	tmpl := template(t, opts.CommonName)
	tmpl.DNSNames = opts.DNSNames
	tmpl.IPAddresses = opts.IPAddresses
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if opts.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if opts.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	return tmpl
}

// sign makes the certificate tmpl describes for key, signed by parent's
// signer.
func sign(t testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) Cert {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Cert{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}
