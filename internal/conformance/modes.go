package conformance

import (
	"fmt"
	"slices"
	"strings"
)

// Probe modes: what address a probe dials.
const (
	ModePodIP     = "pod-ip"     // the destination pod's IP
	ModeServiceIP = "service-ip" // the ClusterIP of the destination pod's own Service s-<pod>
)

// AllModes lists the probe modes.
func AllModes() []string { return []string{ModePodIP, ModeServiceIP} }

// ParseModes checks a --modes list.
func ParseModes(modes []string) ([]string, error) {
	if len(modes) == 0 {
		return []string{ModePodIP}, nil
	}
	for _, m := range modes {
		if !slices.Contains(AllModes(), m) {
			return nil, fmt.Errorf("probe mode %q is unknown: use %s", m, strings.Join(AllModes(), " or "))
		}
	}
	return modes, nil
}

// ServiceName is the Service in front of pod ns/name (selecting it by PodIDLabel).
func ServiceName(podName string) string { return "s-" + podName }
