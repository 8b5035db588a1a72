package policy

import (
	"fmt"
	"math/bits"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// portPrefix is an aligned block of 2^(16-Len) ports starting at Port.
type portPrefix struct {
	Port uint16
	Len  uint8
}

// rangePrefixes splits [lo, hi] into the fewest aligned power-of-two blocks.
func rangePrefixes(lo, hi uint16) []portPrefix {
	var out []portPrefix
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		// Largest block aligned at l: limited by l's trailing zeros and the remaining size.
		size := uint32(1) << 16
		if l != 0 {
			size = uint32(1) << bits.TrailingZeros32(l)
		}
		for size > h-l+1 {
			size >>= 1
		}
		out = append(out, portPrefix{Port: uint16(l), Len: uint8(16 - bits.TrailingZeros32(size))})
		l += size
	}
	return out
}

// portSpec is one resolved entry of a rule's ports list.
type portSpec struct {
	Proto maps.Proto // ProtoAny only for "no ports list" (all protocols)
	// Named is the port name when the entry names a port (resolved later on
	// the destination pod); empty for numeric or all-ports entries.
	Named string
	// Lo..Hi is the port range; Lo == 0 means all ports of Proto.
	Lo, Hi uint16
}

func (s portSpec) allPorts() bool { return s.Named == "" && s.Lo == 0 }

// parsePorts turns a rule's ports list into portSpecs. No list (or an empty
// one) means all ports of all protocols.
func parsePorts(ports []networkingv1.NetworkPolicyPort) ([]portSpec, error) {
	if len(ports) == 0 {
		return []portSpec{{Proto: ProtoAny}}, nil
	}
	out := make([]portSpec, 0, len(ports))
	for i, p := range ports {
		proto := ProtoTCP
		if p.Protocol != nil {
			n, err := protoNumber(*p.Protocol)
			if err != nil {
				return nil, fmt.Errorf("ports[%d]: %w", i, err)
			}
			proto = n
		}
		s := portSpec{Proto: proto}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return nil, fmt.Errorf("ports[%d]: endPort %d without port", i, *p.EndPort)
			}
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == "" {
				return nil, fmt.Errorf("ports[%d]: empty port name", i)
			}
			if p.EndPort != nil {
				return nil, fmt.Errorf("ports[%d]: endPort %d with named port %q (endPort needs a numeric port)", i, *p.EndPort, p.Port.StrVal)
			}
			s.Named = p.Port.StrVal
		default:
			v := p.Port.IntVal
			if v < 1 || v > 65535 {
				return nil, fmt.Errorf("ports[%d]: port %d out of range 1..65535", i, v)
			}
			s.Lo, s.Hi = uint16(v), uint16(v)
			if p.EndPort != nil {
				e := *p.EndPort
				if e < v || e > 65535 {
					return nil, fmt.Errorf("ports[%d]: endPort %d must be in %d..65535", i, e, v)
				}
				s.Hi = uint16(e)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// resolveNamed returns the port numbers a named port has on a pod: the
// container ports with that name and the entry's protocol.
func resolveNamed(p *Pod, name string, proto maps.Proto) []uint16 {
	var out []uint16
	for _, cp := range p.Ports {
		if cp.Name == name && cp.Protocol == proto {
			out = append(out, cp.Port)
		}
	}
	return out
}
