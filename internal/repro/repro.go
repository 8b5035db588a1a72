// Package repro turns a failure bundle back into the same lab and the same check: `starlab repro`.
// It checks that this Starlab can replay the bundle (version, node image at hand), creates a fresh
// lab with the bundle's Kubernetes version, workers and chart values (offline, from the cache),
// applies the recorded objects in order, reruns the failing scenario (or conformance case) and
// compares the wrong cells of the rerun with the recorded ones.
package repro

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/starlab-dev/starlab/internal/bundle"
)

// Outcomes of a rerun.
const (
	Reproduced    = "reproduced"     // the same wrong cells
	Different     = "different"      // wrong cells, but not the same ones
	NotReproduced = "not-reproduced" // no wrong cell
)

// Difference is one way this Starlab differs from the one that wrote the bundle.
type Difference struct {
	What   string `json:"what"`
	Bundle string `json:"bundle"`
	Here   string `json:"here"`
	// Blocking differences stop the repro before anything is created; Fix says what to do.
	Blocking bool   `json:"blocking"`
	Fix      string `json:"fix,omitempty"`
}

func (d Difference) String() string {
	s := fmt.Sprintf("%s: bundle %s, here %s", d.What, d.Bundle, d.Here)
	if d.Fix != "" {
		s += ": " + d.Fix
	}
	return s
}

// Here is what this Starlab offers: its build and the node image it would run for a version.
type Here struct {
	Starlab bundle.Version
	// NodeImage returns the node image this Starlab runs for version, and whether it is at hand
	// (docker or the cache).
	NodeImage func(ctx context.Context, version string) (ref string, present bool, err error)
	// Supported are the Kubernetes versions this Starlab builds.
	Supported []string
}

// Check lists how this Starlab differs from the one that wrote rec; a Blocking difference means
// the repro cannot run offline.
func Check(ctx context.Context, rec *bundle.Record, here Here) ([]Difference, error) {
	var out []Difference
	in := rec.Inputs
	if b, h := in.Starlab.Revision, here.Starlab.Revision; b != h || in.Starlab.Modified || here.Starlab.Modified {
		out = append(out, Difference{
			What: "starlab build", Bundle: in.Starlab.String(), Here: here.Starlab.String(),
			Fix: "the rerun uses this build; build the bundle's commit (`git checkout " + shortRev(b) + " && make build`) for an exact replay",
		})
	}
	if in.KubernetesVersion == "" {
		return out, fmt.Errorf("the bundle records no Kubernetes version (its versions step failed): it cannot be replayed")
	}
	if len(here.Supported) > 0 && !slices.Contains(here.Supported, in.KubernetesVersion) {
		out = append(out, Difference{
			What: "kubernetes version", Bundle: in.KubernetesVersion, Here: strings.Join(here.Supported, ", "), Blocking: true,
			Fix: "this Starlab cannot build that version: use the Starlab that wrote the bundle",
		})
		return out, nil
	}
	ref, present, err := here.NodeImage(ctx, in.KubernetesVersion)
	if err != nil {
		return out, fmt.Errorf("node image for Kubernetes %s: %w", in.KubernetesVersion, err)
	}
	if in.NodeImage != "" && ref != in.NodeImage {
		out = append(out, Difference{
			What: "node image", Bundle: in.NodeImage, Here: ref,
			Fix: "this Starlab builds another node image for " + in.KubernetesVersion + " (other inputs); the lab runs " + ref,
		})
	}
	if !present {
		out = append(out, Difference{
			What: "node image in the cache", Bundle: in.NodeImage, Here: ref + " (absent)", Blocking: true,
			Fix: "build it first with `starlab image build --kubernetes-version " + in.KubernetesVersion + "` (about 25 minutes cold), then run starlab repro again",
		})
	}
	return out, nil
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	if r == "" {
		return "<commit>"
	}
	return r
}

// Blocking are the differences that stop a repro.
func Blocking(diffs []Difference) []Difference {
	var out []Difference
	for _, d := range diffs {
		if d.Blocking {
			out = append(out, d)
		}
	}
	return out
}

// Comparison is the recorded failure against the rerun's: wrong cells (bundle.TruthCell.String),
// or, for a step that failed without wrong cells, the step (bundle.StepFailure).
type Comparison struct {
	Outcome  string   `json:"outcome"`
	Recorded []string `json:"recorded"` // what failed in the bundle
	Rerun    []string `json:"rerun"`    // what failed in the rerun
	Same     []string `json:"same"`
	Gone     []string `json:"gone"` // failed in the bundle, right in the rerun
	New      []string `json:"new"`  // right in the bundle, failed in the rerun
}

// Compare compares what failed in the recorded step with what failed in the rerun (nil: the rerun
// passed): the wrong cells by their key and three values, or the failing step when it had no
// wrong cells.
func Compare(recorded, rerun *bundle.Record) Comparison {
	c := Comparison{Recorded: failureKeys(recorded), Rerun: failureKeys(rerun)}
	for _, k := range c.Recorded {
		if slices.Contains(c.Rerun, k) {
			c.Same = append(c.Same, k)
		} else {
			c.Gone = append(c.Gone, k)
		}
	}
	for _, k := range c.Rerun {
		if !slices.Contains(c.Recorded, k) {
			c.New = append(c.New, k)
		}
	}
	switch {
	case len(c.Rerun) == 0:
		c.Outcome = NotReproduced
	case len(c.Gone) == 0 && len(c.New) == 0:
		c.Outcome = Reproduced
	default:
		c.Outcome = Different
	}
	return c
}

func failureKeys(r *bundle.Record) []string {
	out := []string{}
	if r == nil {
		return out
	}
	out = append(out, r.Failure()...)
	slices.Sort(out)
	return slices.Compact(out)
}
