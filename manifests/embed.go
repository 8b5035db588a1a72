// Package manifests embeds the demo manifests: manifests/stars (the stars NetworkPolicy demo; its policy
// steps under stars/policies) and manifests/apis (the orders/inventory/db demo in namespace shop).
//
// Every workload uses the image DemoImagePlaceholder; whoever applies them replaces it with the demo image
// reference `starlab up` built (localhost/starlab/demo:<content-hash>) through lab.SubstituteImages.
package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// FS holds stars/ and apis/.
//
//go:embed all:stars all:apis
var FS embed.FS

// DemoImagePlaceholder is the image reference every demo manifest carries until lab.SubstituteImages
// replaces it.
const DemoImagePlaceholder = "localhost/starlab/demo:TAG"

// Directories of the two demos' workloads (their policies are under <dir>/policies).
const (
	StarsDir = "stars"
	APIsDir  = "apis"
)

// Files returns the *.yaml files directly in dir (not its subdirectories), in name order.
func Files(dir string) ([]string, error) {
	entries, err := fs.ReadDir(FS, dir)
	if err != nil {
		return nil, fmt.Errorf("list embedded manifests %s (want %s, %s or one of their policies dirs): %w", dir, StarsDir, APIsDir, err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// StarsPolicySteps are the stars demo's policy files in tutorial order: default-deny, allow-ui,
// backend-policy, frontend-policy.
func StarsPolicySteps() []string {
	return []string{
		"stars/policies/1-default-deny.yaml",
		"stars/policies/2-allow-ui.yaml",
		"stars/policies/3-backend-policy.yaml",
		"stars/policies/4-frontend-policy.yaml",
	}
}
