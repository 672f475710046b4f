// Command mkimage builds the prometheus-streams container image without a
// container daemon, and checks one it built: the same image as
// packaging/container/Dockerfile (a static binary on an empty base, user
// 65534, the configuration mounted at /etc/prometheus-streams), written as a
// tarball that `docker load` and `podman load` read.
//
//	mkimage -binary dist/stage/prometheus-streams -tag prometheus-streams:VERSION -out dist/image.tar
//	mkimage -verify dist/image.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	binaryPath = "/usr/bin/prometheus-streams"
	configDir  = "/etc/prometheus-streams"
	// caPath is where Go's crypto/x509 looks first for the system roots on
	// Linux, as on Debian and in distroless.
	caPath = "/etc/ssl/certs/ca-certificates.crt"
	user   = "65534:65534" // nobody, as in distroless
	// monitorPort is the example configuration's monitor_port.
	monitorPort = "10000/tcp"
)

func main() {
	var (
		binary  = flag.String("binary", "", "the static linux binary to put in the image")
		caFile  = flag.String("ca", caPath, "CA bundle (PEM) for the image's system roots; required")
		tag     = flag.String("tag", "prometheus-streams:dev", "the image's tag in the tarball")
		arch    = flag.String("arch", runtime.GOARCH, "the binary's GOARCH")
		version = flag.String("version", "dev", "the org.opencontainers.image.version label")
		out     = flag.String("out", "", "the image tarball to write")
		verify  = flag.String("verify", "", "check an image tarball (non-root user, CA bundle present, entrypoint present and runnable) instead of building")
	)
	flag.Parse()
	var err error
	switch {
	case *verify != "":
		err = verifyImage(*verify, os.Stdout)
	case *binary != "" && *out != "":
		err = build(*binary, *caFile, *tag, *arch, *version, *out)
	default:
		err = errors.New("give -binary and -out, or -verify")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

// buildTime is SOURCE_DATE_EPOCH when set, so two builds of one commit give
// the same image digest.
func buildTime() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(binary, caFile, tag, arch, version, out string) error {
	created, err := buildTime()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	// The image has no other roots: without the bundle, tls:// NATS URLs and
	// an https:// Pushgateway with public certificates fail at run time, so a
	// build machine without one fails here instead.
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("CA bundle for the image (-ca; Debian: apt-get install ca-certificates): %w", err)
	}
	if err := checkCABundle(ca); err != nil {
		return fmt.Errorf("-ca %s: %w", caFile, err)
	}
	layerTar, err := rootfs(bin, ca, created)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "mkimage: " + binaryPath},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: created}
	cf.Config = v1.Config{
		User:         user,
		Entrypoint:   []string{binaryPath},
		WorkingDir:   "/",
		Env:          []string{"PATH=/usr/bin:/bin"},
		ExposedPorts: map[string]struct{}{monitorPort: {}},
		Volumes:      map[string]struct{}{configDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "prometheus-streams",
			"org.opencontainers.image.source":  "https://github.com/choria-io/prometheus-streams",
			"org.opencontainers.image.version": version,
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, tag, digest)
	return nil
}

// checkCABundle reports whether b holds at least one PEM certificate.
func checkCABundle(b []byte) error {
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return errors.New("no PEM certificate in the CA bundle")
	}
	return nil
}

// rootfs is the image's only layer: the binary, the CA bundle, passwd and
// group naming 65534 (so the user has a name), and the configuration's mount
// point.
func rootfs(bin, ca []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: mtime})
	}
	file := func(p string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")) },
		func() error { return dir(strings.TrimPrefix(configDir, "/"), 0o755) },
		func() error { return dir("tmp", 0o1777) },
		func() error { return dir("usr", 0o755) },
		func() error { return dir("usr/bin", 0o755) },
		func() error { return file(strings.TrimPrefix(binaryPath, "/"), 0o755, bin) },
		func() error { return dir("etc/ssl", 0o755) },
		func() error { return dir("etc/ssl/certs", 0o755) },
		func() error { return file(strings.TrimPrefix(caPath, "/"), 0o644, ca) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// verifyImage checks what CI can check without a daemon: the user is not
// root, the CA bundle is in the image and holds certificates, the entrypoint
// is an executable file in the image, and (when the image is for this
// machine's architecture) it runs `version`.
func verifyImage(path string, w io.Writer) error {
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	summary, err := json.MarshalIndent(map[string]any{
		"os": cf.OS, "architecture": cf.Architecture, "user": cf.Config.User, "entrypoint": cf.Config.Entrypoint,
		"exposed_ports": cf.Config.ExposedPorts, "volumes": cf.Config.Volumes, "labels": cf.Config.Labels,
	}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", summary)
	uid, _, _ := strings.Cut(cf.Config.User, ":")
	if uid == "" || uid == "0" || uid == "root" {
		return fmt.Errorf("image runs as root (user %q)", cf.Config.User)
	}
	if len(cf.Config.Entrypoint) == 0 {
		return errors.New("image has no entrypoint")
	}
	ca, _, err := extract(img, strings.TrimPrefix(caPath, "/"))
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	if err := checkCABundle(ca); err != nil {
		return fmt.Errorf("CA bundle %s: %w", caPath, err)
	}
	fmt.Fprintf(w, "CA bundle %s present (%d bytes)\n", caPath, len(ca))
	entry := strings.TrimPrefix(cf.Config.Entrypoint[0], "/")
	bin, mode, err := extract(img, entry)
	if err != nil {
		return fmt.Errorf("entrypoint: %w", err)
	}
	if mode&0o111 == 0 {
		return fmt.Errorf("entrypoint %s is not executable (mode %o)", entry, mode)
	}
	if cf.Architecture != runtime.GOARCH {
		fmt.Fprintf(w, "entrypoint %s present (%d bytes); not run: image is %s\n", entry, len(bin), cf.Architecture)
		return nil
	}
	tmp, err := os.MkdirTemp("", "mkimage")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	exe := filepath.Join(tmp, "prometheus-streams")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		return err
	}
	outb, err := exec.Command(exe, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("entrypoint version: %w: %s", err, outb)
	}
	fmt.Fprintf(w, "entrypoint runs:\n%s", outb)
	return nil
}

// extract reads one regular file from the image's flattened filesystem.
func extract(img v1.Image, path string) ([]byte, int64, error) {
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("%s is not in the image", path)
		}
		if err != nil {
			return nil, 0, err
		}
		if strings.TrimPrefix(h.Name, "./") != path {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, 0, fmt.Errorf("%s is not a regular file", path)
		}
		b, err := io.ReadAll(tr)
		return b, h.Mode, err
	}
}
