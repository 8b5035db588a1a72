package conformance

import (
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
)

// tags returns the sorted, de-duplicated tag list.
func tags(t ...string) []string {
	out := slices.Clone(t)
	slices.Sort(out)
	return slices.Compact(out)
}

func pols(p ...*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy { return p }
