package agent

import (
	"sync"

	"github.com/starlab-dev/starlab/internal/flow"
)

// maxVerdictSeries bounds the policy/rule label pairs of starlab_policy_verdicts_total.
const maxVerdictSeries = 1000

// boundedLabels admits up to max distinct keys; later keys are folded into "other".
type boundedLabels struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func newBoundedLabels(max int) *boundedLabels {
	return &boundedLabels{max: max, seen: map[string]bool{}}
}

// admit reports whether key may have its own series.
func (b *boundedLabels) admit(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[key] {
		return true
	}
	if len(b.seen) >= b.max {
		return false
	}
	b.seen[key] = true
	return true
}

// countVerdict counts a new flow's verdict under every rule that named it (a Pass and the rule
// after it both count).
func (m *metrics) countVerdict(f *flow.Flow) {
	if f.EventType != flow.EventNew && f.EventType != flow.EventDrop {
		return
	}
	for _, p := range append(append([]flow.Policy(nil), f.AllowedBy...), f.DeniedBy...) {
		name := p.Name
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
		rule := p.Rule
		if !m.verdictLabels.admit(p.Kind + "\x00" + name + "\x00" + rule) {
			name, rule = "other", ""
		}
		m.verdicts.WithLabelValues(p.Kind, p.Tier, name, rule, string(f.Verdict)).Inc()
	}
}
