package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/policy"
)

// ConditionOverlap is the status condition a ClusterNetworkPolicy gets while another policy of the
// same tier and priority selects a common pod (the API calls that ambiguous; this datapath orders
// such policies by name).
const ConditionOverlap = "PriorityOverlap"

// clusterPolicyAPI is the ClusterNetworkPolicy group version the agent watches.
const clusterPolicyAPI = "policy.networking.k8s.io/v1beta1"

// startClusterPolicies watches ClusterNetworkPolicies through the typed informers when the API
// server serves them (the chart installs the CRDs; without them the agent enforces NetworkPolicy
// only and says so). It returns once the informer synced.
func (a *Agent) startClusterPolicies(ctx context.Context, disc discovery.DiscoveryInterface, client cnpclient.Interface, handler cache.ResourceEventHandler) error {
	if _, err := disc.ServerResourcesForGroupVersion(clusterPolicyAPI); err != nil {
		a.log.Warn("ClusterNetworkPolicy is not served: only NetworkPolicy is enforced (install the chart's CRDs)", "api", clusterPolicyAPI, "err", err)
		return nil
	}
	f := cnpinformers.NewSharedInformerFactory(client, 0)
	inf := f.Policy().V1beta1().ClusterNetworkPolicies()
	if _, err := inf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("add clusternetworkpolicy handler: %w", err)
	}
	a.policy.sources.cnps = inf.Lister()
	a.policy.cnpStatus = client.PolicyV1beta1().ClusterNetworkPolicies()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer %v did not sync: %w", typ, ctx.Err())
		}
	}
	return nil
}

// clusterPolicyStatus writes ClusterNetworkPolicy status (the overlap condition).
type clusterPolicyStatus interface {
	UpdateStatus(ctx context.Context, p *cnpv1beta1.ClusterNetworkPolicy, opts metav1.UpdateOptions) (*cnpv1beta1.ClusterNetworkPolicy, error)
}

// clusterPolicies lists the ClusterNetworkPolicies (none when the API is not served).
func (p *policies) clusterPolicies() ([]*cnpv1beta1.ClusterNetworkPolicy, error) {
	if p.sources.cnps == nil {
		return nil, nil
	}
	out, err := p.sources.cnps.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list clusternetworkpolicies: %w", err)
	}
	return out, nil
}

// clusterPolicyObject is the object Events about a ClusterNetworkPolicy are recorded on: the
// informer's copy (or a stub), with its kind set so the recorder can reference it.
func clusterPolicyObject(lister cnplisters.ClusterNetworkPolicyLister, name string) *cnpv1beta1.ClusterNetworkPolicy {
	obj := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if lister != nil {
		if got, err := lister.Get(name); err == nil {
			obj = got.DeepCopy()
		}
	}
	obj.APIVersion, obj.Kind = clusterPolicyAPI, "ClusterNetworkPolicy"
	return obj
}

// reportClusterProblem emits the Event of a new ClusterNetworkPolicy problem and counts it.
func (p *policies) reportClusterProblem(pr policy.Problem) {
	if p.cnpProblems != nil {
		p.cnpProblems(pr.Reason)
	}
	if p.recorder == nil {
		return
	}
	p.recorder.Eventf(clusterPolicyObject(p.sources.cnps, pr.Policy.Name), corev1.EventTypeWarning, "PolicyRuleFailedClosed", "node %s: %s", p.node, pr.Message)
}

// reportOverlapsLocked emits an Event per new overlap and sets the overlap condition on both
// policies (every agent computes the same overlaps; a condition already set is left alone).
func (p *policies) reportOverlapsLocked(ctx context.Context, res *policy.Result) {
	now := map[string]bool{}
	overlapping := map[string]string{} // policy name -> message
	for _, o := range res.Overlaps {
		msg := fmt.Sprintf("%s tier, priority %d: ClusterNetworkPolicies %s and %s both select pod %s; the order between them is ambiguous (this datapath evaluates %s first): give them different priorities",
			o.Tier, o.Priority, o.A.Name, o.B.Name, o.Pod, o.A.Name)
		now[msg] = true
		overlapping[o.A.Name], overlapping[o.B.Name] = msg, msg
		if p.overlaps[msg] {
			continue
		}
		p.log.Warn("clusternetworkpolicy priority overlap", "detail", msg)
		if p.recorder != nil {
			for _, name := range []string{o.A.Name, o.B.Name} {
				p.recorder.Eventf(clusterPolicyObject(p.sources.cnps, name), corev1.EventTypeWarning, "PriorityOverlap", "%s", msg)
			}
		}
	}
	p.overlaps = now
	if p.cnpStatus == nil || p.sources.cnps == nil {
		return
	}
	all, err := p.sources.cnps.List(labels.Everything())
	if err != nil {
		return
	}
	for _, obj := range all {
		cond := metav1.Condition{Type: ConditionOverlap, Status: metav1.ConditionFalse, Reason: "NoOverlap", Message: "no other policy of the same tier and priority selects a common pod", ObservedGeneration: obj.Generation}
		if msg, ok := overlapping[obj.Name]; ok {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "SamePriorityOverlap", msg
		}
		if old := meta.FindStatusCondition(obj.Status.Conditions, ConditionOverlap); old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message {
			continue
		}
		next := obj.DeepCopy()
		meta.SetStatusCondition(&next.Status.Conditions, cond)
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := p.cnpStatus.UpdateStatus(uctx, next, metav1.UpdateOptions{FieldManager: "starlab-agent"})
		cancel()
		if err != nil {
			p.log.Debug("set clusternetworkpolicy overlap condition (another agent may have set it)", "policy", obj.Name, "err", err)
		}
	}
}
