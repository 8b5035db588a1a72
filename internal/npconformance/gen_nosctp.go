//go:build ignore

// gen_nosctp writes nosctp/base: the conformance manifests of sigs.k8s.io/network-policy-api (the
// version go.mod requires) with the SCTP server containers removed (StripSCTPServers).
// Run: go generate ./internal/npconformance
package main

import (
	"io/fs"
	"log"
	"os"
	"path/filepath"

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
}
