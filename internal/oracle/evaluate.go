package oracle

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Direction names.
const (
	Egress  = "egress"
	Ingress = "ingress"
)

// RuleRef names the rule of a policy that allowed traffic: its index in spec.ingress or spec.egress.
type RuleRef struct {
	Policy string `json:"policy"` // namespace/name
	Rule   int    `json:"rule"`
}

func (r RuleRef) String() string { return fmt.Sprintf("%s rule %d", r.Policy, r.Rule) }

// DirVerdict is the answer for one direction: egress on the source pod, ingress on the destination.
type DirVerdict struct {
	Direction string `json:"direction"`
	// Pod is the pod whose policies decide this direction; empty when that side is not a pod.
	Pod string `json:"pod,omitempty"`
	// Enforced: some policy selects Pod for this direction (it is isolated).
	Enforced bool `json:"enforced"`
	Allowed  bool `json:"allowed"`
	// SelectedBy lists the policies (namespace/name, sorted) that select Pod for this direction.
	SelectedBy []string `json:"selectedBy,omitempty"`
	// AllowedBy lists every rule that allows the traffic (sorted by policy, then rule).
	AllowedBy []RuleRef `json:"allowedBy,omitempty"`
	Reason    string    `json:"reason"`
	// Tier is the tier that decided (Admin, NetworkPolicy, Baseline, Default) when the cluster has
	// ClusterNetworkPolicies; Walk is each tier's part in order, up to the deciding one.
	Tier string     `json:"tier,omitempty"`
	Walk []TierStep `json:"walk,omitempty"`
	// Ambiguous names policies of one tier and priority that both match with different actions.
	Ambiguous []string `json:"ambiguous,omitempty"`
}

// TierStep is one tier's part in a direction's decision.
type TierStep struct {
	Tier string `json:"tier"`
	// Decided: this tier made the final decision (Accept, Deny, or NetworkPolicy's allow/deny).
	Decided bool `json:"decided"`
	// Action is Accept, Deny or Pass (a ClusterNetworkPolicy rule), Allow or Deny (NetworkPolicy,
	// Default); empty when the tier had nothing to say.
	Action   string `json:"action,omitempty"`
	Policy   string `json:"policy,omitempty"` // cnp/NAME or namespace/name
	Rule     int    `json:"rule"`
	RuleName string `json:"ruleName,omitempty"`
	Text     string `json:"text"`
}

// Verdict is the answer for one connection.
type Verdict struct {
	From     string          `json:"from"`
	To       string          `json:"to"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"`
	Allowed  bool            `json:"allowed"`
	Reason   string          `json:"reason"`
	Egress   DirVerdict      `json:"egress"`
	Ingress  DirVerdict      `json:"ingress"`
	// Backends holds one verdict per backend pod (on its targetPort) when the destination is a Service.
	// The Service is allowed when it has backends and every one is allowed; Egress and Ingress above
	// are then those of the first denied backend, or of the first backend.
	Backends []Verdict `json:"backends,omitempty"`
}

// side is one resolved end of a connection.
type side struct {
	pod  *Pod       // nil when not a pod
	ip   netip.Addr // invalid when unknown (a pod without IP)
	desc string
}

// Evaluate answers whether src may connect to dst on port/proto (empty proto means TCP). A Service
// destination is evaluated on each of its backends with the Service port's targetPort.
func (o *Oracle) Evaluate(src, dst Endpoint, port int32, proto corev1.Protocol) (Verdict, error) {
	proto = protoOrTCP(proto)
	switch proto {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return Verdict{}, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", proto)
	}
	if port < 1 || port > 65535 {
		return Verdict{}, fmt.Errorf("port %d: want 1-65535", port)
	}
	from, err := o.resolve(src)
	if err != nil {
		return Verdict{}, fmt.Errorf("source: %w", err)
	}
	if from.pod == nil && src.Kind == KindService {
		return Verdict{}, fmt.Errorf("source %s: a Service cannot open connections; use one of its pods", src)
	}
	if svc := o.serviceFor(dst); svc != nil {
		return o.evaluateService(from, svc, port, proto), nil
	}
	if dst.Kind == KindService {
		return Verdict{}, fmt.Errorf("destination %s: no such service", dst)
	}
	to, err := o.resolve(dst)
	if err != nil {
		return Verdict{}, fmt.Errorf("destination: %w", err)
	}
	return o.evaluatePair(from, to, port, proto), nil
}

// resolve turns an endpoint into a side: IPs of (non-hostNetwork) pods become those pods.
func (o *Oracle) resolve(e Endpoint) (side, error) {
	switch e.Kind {
	case KindPod:
		p := o.pods[e.Namespace+"/"+e.Name]
		if p == nil {
			return side{}, fmt.Errorf("no pod %s/%s", e.Namespace, e.Name)
		}
		return podSide(p), nil
	case KindIP:
		if !e.IP.IsValid() {
			return side{}, fmt.Errorf("empty IP address")
		}
		if p := o.podByIP[e.IP]; p != nil {
			return podSide(p), nil
		}
		desc := "ip " + e.IP.String()
		if name := o.externals[e.IP]; name != "" {
			desc = name + " (" + e.IP.String() + ")"
		}
		return side{ip: e.IP, desc: desc}, nil
	case KindService:
		return side{}, nil
	}
	return side{}, fmt.Errorf("unknown endpoint kind %q", e.Kind)
}

func podSide(p *Pod) side { return side{pod: p, ip: p.IP, desc: "pod " + p.Ref()} }

func (o *Oracle) serviceFor(e Endpoint) *Service {
	switch e.Kind {
	case KindService:
		return o.services[e.Namespace+"/"+e.Name]
	case KindIP:
		if o.podByIP[e.IP] == nil {
			return o.svcByIP[e.IP]
		}
	}
	return nil
}

func (o *Oracle) evaluateService(from side, svc *Service, port int32, proto corev1.Protocol) Verdict {
	v := Verdict{From: from.desc, To: "service " + svc.Ref(), Port: port, Protocol: proto}
	var sp *ServicePort
	for i := range svc.Ports {
		if svc.Ports[i].Port == port && protoOrTCP(svc.Ports[i].Protocol) == proto {
			sp = &svc.Ports[i]
			break
		}
	}
	if sp == nil {
		v.Reason = fmt.Sprintf("service %s has no port %s/%d: nothing answers", svc.Ref(), proto, port)
		return v
	}
	backends := o.Backends(svc)
	if len(backends) == 0 {
		v.Reason = fmt.Sprintf("service %s has no backend pods (selector %v matches none)", svc.Ref(), svc.Selector)
		return v
	}
	v.Allowed = true
	decider := -1
	for _, b := range backends {
		target, ok := targetPort(sp.TargetPort, port, b, proto)
		if !ok {
			bv := Verdict{From: from.desc, To: "pod " + b.Ref(), Protocol: proto,
				Reason: fmt.Sprintf("backend %s has no %s container port named %q (targetPort of service %s)", b.Ref(), proto, sp.TargetPort.StrVal, svc.Ref())}
			v.Backends = append(v.Backends, bv)
		} else {
			v.Backends = append(v.Backends, o.evaluatePair(from, podSide(b), target, proto))
		}
		if last := v.Backends[len(v.Backends)-1]; !last.Allowed && v.Allowed {
			v.Allowed, decider = false, len(v.Backends)-1
		}
	}
	if decider < 0 {
		decider = 0
	}
	v.Egress, v.Ingress = v.Backends[decider].Egress, v.Backends[decider].Ingress
	if v.Allowed {
		v.Reason = fmt.Sprintf("service %s: every backend allowed (%s)", svc.Ref(), v.Backends[0].Reason)
	} else {
		v.Reason = fmt.Sprintf("service %s: backend %s denied: %s", svc.Ref(), v.Backends[decider].To, v.Backends[decider].Reason)
	}
	return v
}

// targetPort resolves a Service port's targetPort on one backend pod: empty means the Service port, a
// name means the backend's container port of that name and protocol.
func targetPort(tp intstr.IntOrString, port int32, backend *Pod, proto corev1.Protocol) (int32, bool) {
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, cp := range backend.Ports {
			if cp.Name == tp.StrVal && protoOrTCP(cp.Protocol) == proto {
				return cp.Port, true
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	}
	return port, true
}

func (o *Oracle) evaluatePair(from, to side, port int32, proto corev1.Protocol) Verdict {
	v := Verdict{From: from.desc, To: to.desc, Port: port, Protocol: proto}
	v.Egress = o.evalDirection(Egress, from, to, to.pod, port, proto)
	v.Ingress = o.evalDirection(Ingress, to, from, to.pod, port, proto)
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	switch {
	case v.Allowed:
		v.Reason = "allowed: egress " + v.Egress.Reason + "; ingress " + v.Ingress.Reason
	case !v.Egress.Allowed && !v.Ingress.Allowed:
		v.Reason = "denied on egress and ingress: " + v.Egress.Reason + "; " + v.Ingress.Reason
	case !v.Egress.Allowed:
		v.Reason = "denied on egress: " + v.Egress.Reason
	default:
		v.Reason = "denied on ingress: " + v.Ingress.Reason
	}
	return v
}

// evalDirection decides one direction for self (the source for egress, the destination for ingress)
// against the other side. dst is the destination pod, on which named ports resolve. With
// ClusterNetworkPolicies in the cluster the decision walks the tiers: Admin, NetworkPolicy, Baseline,
// default allow (Walk records each tier's part).
func (o *Oracle) evalDirection(dir string, self, other side, dst *Pod, port int32, proto corev1.Protocol) DirVerdict {
	d := DirVerdict{Direction: dir, Allowed: true}
	switch {
	case self.pod == nil:
		d.Reason = fmt.Sprintf("%s is not a pod: no %s policy applies", self.desc, dir)
		return d
	case self.pod.HostNetwork:
		d.Pod = self.pod.Ref()
		d.Reason = fmt.Sprintf("%s uses hostNetwork: NetworkPolicy does not apply", self.desc)
		return d
	}
	d.Pod = self.pod.Ref()
	if len(o.clusterPolicies) == 0 {
		o.evalNetworkPolicies(&d, dir, other, dst, port, proto)
		return d
	}
	if o.walkTier(&d, TierAdmin, dir, self, other, dst, port, proto) {
		return d
	}
	o.evalNetworkPolicies(&d, dir, other, dst, port, proto)
	step := TierStep{Tier: TierNetworkPolicy, Decided: d.Enforced}
	switch {
	case !d.Enforced:
		step.Text = "no policy selects"
	case d.Allowed:
		step.Action, step.Policy, step.Rule = "Allow", d.AllowedBy[0].Policy, d.AllowedBy[0].Rule
		step.Text = "allowed by " + d.AllowedBy[0].Policy + " " + dirRule(dir, d.AllowedBy[0].Rule)
	default:
		step.Action = "Deny"
		step.Text = "deny: selected by " + strings.Join(d.SelectedBy, ", ") + ", no rule allows it"
	}
	d.Walk = append(d.Walk, step)
	if d.Enforced {
		d.Tier = TierNetworkPolicy
		d.Reason = walkText(d.Walk)
		return d
	}
	if o.walkTier(&d, TierBaseline, dir, self, other, dst, port, proto) {
		return d
	}
	d.Walk = append(d.Walk, TierStep{Tier: TierDefault, Decided: true, Action: "Allow", Text: "allow"})
	d.Tier, d.Allowed = TierDefault, true
	d.Reason = walkText(d.Walk)
	return d
}

// walkTier evaluates one ClusterNetworkPolicy tier for d's pod: the selecting policies in priority order,
// each one's rules in order; the first matching rule's action counts. It appends the tier's step and
// reports whether the tier decided (Accept or Deny; Pass and no match go on to the next tier).
func (o *Oracle) walkTier(d *DirVerdict, tier, dir string, self, other side, dst *Pod, port int32, proto corev1.Protocol) bool {
	step := TierStep{Tier: tier}
	var selecting []string
	var hit *clusterPolicy
	for _, p := range o.clusterPolicies {
		if p.tier != tier || !p.selects(self.pod, o.nsLabels(self.pod.Namespace)) {
			continue
		}
		rules := p.inRules
		if dir == Egress {
			rules = p.egRules
		}
		if len(rules) == 0 {
			continue // a policy without rules for this direction does not affect it
		}
		selecting = append(selecting, p.ref)
		for i := range rules {
			if !o.cnpRuleMatches(&rules[i], other, dst, port, proto) {
				continue
			}
			if hit == nil {
				hit = p
				step.Action, step.Policy, step.Rule, step.RuleName = rules[i].action, p.ref, i, rules[i].name
			} else if p.priority == hit.priority && rules[i].action != step.Action {
				d.Ambiguous = append(d.Ambiguous, fmt.Sprintf("%s and %s have priority %d in the %s tier and both match (%s, %s): the API leaves the choice to the implementation",
					hit.ref, p.ref, p.priority, tier, step.Action, rules[i].action))
			}
			break
		}
	}
	switch {
	case hit != nil:
		step.Text = strings.ToLower(step.Action) + " by " + step.Policy + " " + dirRule(dir, step.Rule)
		if step.RuleName != "" {
			step.Text += " (" + step.RuleName + ")"
		}
		step.Decided = step.Action != ActionPass
	case len(selecting) > 0:
		step.Text = "no rule of " + strings.Join(selecting, ", ") + " matches"
	default:
		step.Text = "no policy selects"
	}
	d.Walk = append(d.Walk, step)
	if !step.Decided {
		return false
	}
	d.Tier, d.Allowed, d.Enforced = tier, step.Action == ActionAccept, true
	d.Reason = walkText(d.Walk)
	return true
}

// walkText joins a tier walk: "Admin: pass by cnp/x egress rule 0 → NetworkPolicy: no policy selects → ...".
func walkText(walk []TierStep) string {
	parts := make([]string, len(walk))
	for i, s := range walk {
		parts[i] = s.Tier + ": " + s.Text
	}
	return strings.Join(parts, " → ")
}

// evalNetworkPolicies decides d by NetworkPolicy v1 alone: isolated when a policy selects the pod for
// the direction, then allowed by the union of their rules.
func (o *Oracle) evalNetworkPolicies(d *DirVerdict, dir string, other side, dst *Pod, port int32, proto corev1.Protocol) {
	self := o.pods[d.Pod]
	for _, p := range o.policies {
		if !p.selects(self) || (dir == Ingress && !p.ingress) || (dir == Egress && !p.egress) {
			continue
		}
		d.SelectedBy = append(d.SelectedBy, p.ref)
		rules := p.inRules
		if dir == Egress {
			rules = p.egRules
		}
		for i := range rules {
			if o.ruleAllows(p, &rules[i], other, dst, port, proto) {
				d.AllowedBy = append(d.AllowedBy, RuleRef{Policy: p.ref, Rule: i})
			}
		}
	}
	d.Enforced = len(d.SelectedBy) > 0
	d.Allowed = !d.Enforced || len(d.AllowedBy) > 0
	switch {
	case !d.Enforced:
		d.Reason = fmt.Sprintf("no policy selects %s for %s", d.Pod, dir)
	case d.Allowed:
		d.Reason = fmt.Sprintf("allowed by %s %s", d.AllowedBy[0].Policy, dirRule(dir, d.AllowedBy[0].Rule))
	default:
		peer := "from " + other.desc
		if dir == Egress {
			peer = "to " + other.desc
		}
		d.Reason = fmt.Sprintf("default deny: selected by %s, no %s rule allows %s on %s/%d",
			strings.Join(d.SelectedBy, ", "), dir, peer, proto, port)
	}
}

func dirRule(dir string, i int) string { return fmt.Sprintf("%s rule %d", dir, i) }

func (o *Oracle) ruleAllows(p *policy, r *rule, other side, dst *Pod, port int32, proto corev1.Protocol) bool {
	peerOK := len(r.peers) == 0
	for i := range r.peers {
		if r.peers[i].matches(p.ns, other.pod, other.ip, o.nsLabels) {
			peerOK = true
			break
		}
	}
	if !peerOK {
		return false
	}
	if len(r.ports) == 0 {
		return true
	}
	for i := range r.ports {
		if r.ports[i].matches(dst, proto, port) {
			return true
		}
	}
	return false
}
