//go:build ignore

// gen_nosctp writes, from sigs.k8s.io/network-policy-api (the version go.mod requires):
//   - nosctp/base: the conformance manifests with the SCTP server containers removed (StripSCTPServers);
//   - nosctptests: the suite's tests that probe SCTP, with only their SCTP probes removed
//     (StripSCTPProbes), so their TCP and UDP probes run on a kernel without SCTP.
//
// Run: go generate ./internal/npconformance
package main

import (
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/network-policy-api/conformance"

	"github.com/starlab-dev/starlab/internal/npconformance"
)

func main() {
	if err := os.RemoveAll("nosctp"); err != nil {
		log.Fatal(err)
	}
	err := fs.WalkDir(conformance.Manifests, "base", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := conformance.Manifests.ReadFile(p)
		if err != nil {
			return err
		}
		if p == "base/manifests.yaml" {
			data = npconformance.StripSCTPServers(data)
		}
		dst := filepath.Join("nosctp", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		log.Fatal(err)
	}
	files, err := npconformance.NoSCTPTestSources()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.RemoveAll(npconformance.NoSCTPTestsPackage); err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(npconformance.NoSCTPTestsPackage, 0o755); err != nil {
		log.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(npconformance.NoSCTPTestsPackage, strings.ReplaceAll(name, "-", "_")), src, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
