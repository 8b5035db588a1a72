package oracle

import (
	"fmt"
	"sort"
)

// Change is one connection whose verdict differs between two policy sets.
type Change struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Port   PortProto `json:"port"`
	Before Verdict   `json:"before"`
	After  Verdict   `json:"after"`
	Opened bool      `json:"opened"` // denied before, allowed after
}

// Diff compares the truth tables of base and head over the pods both define and the given ports;
// nil ports means the ports either side's pods serve. It returns the changed pairs in table order.
func Diff(base, head *Oracle, ports []PortProto) ([]Change, error) {
	var pods []string
	for ref := range base.pods {
		if head.pods[ref] != nil {
			pods = append(pods, ref)
		}
	}
	sort.Strings(pods)
	if ports == nil {
		ports = mergePorts(base.ServedPorts(), head.ServedPorts())
	}
	bt, err := base.TruthTable(pods, ports)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	ht, err := head.TruthTable(pods, ports)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	var out []Change
	for k := range bt {
		for i := range pods {
			for j := range pods {
				b, h := bt[k].Verdicts[i][j], ht[k].Verdicts[i][j]
				if b.Allowed != h.Allowed {
					out = append(out, Change{From: pods[i], To: pods[j], Port: ports[k], Before: b, After: h, Opened: h.Allowed})
				}
			}
		}
	}
	return out, nil
}

// ServedPorts returns every port/protocol a pod declares, sorted by protocol then port.
func (o *Oracle) ServedPorts() []PortProto {
	var out []PortProto
	for _, p := range o.cluster.Pods {
		for _, cp := range p.Ports {
			out = append(out, PortProto{Port: cp.Port, Protocol: protoOrTCP(cp.Protocol)})
		}
	}
	return mergePorts(out)
}

func mergePorts(lists ...[]PortProto) []PortProto {
	seen := map[PortProto]bool{}
	var out []PortProto
	for _, l := range lists {
		for _, p := range l {
			p.Protocol = protoOrTCP(p.Protocol)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Protocol != out[j].Protocol {
			return out[i].Protocol < out[j].Protocol
		}
		return out[i].Port < out[j].Port
	})
	return out
}
