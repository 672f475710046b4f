package main

import "github.com/prometheus/common/version"

// versionString is the version set at build time with -ldflags
// (github.com/prometheus/common/version.Version), or "dev".
func versionString() string {
	if version.Version == "" {
		return "dev"
	}
	return version.Version
}
