//go:build e2e

package scenarios

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// benchProbeTimeout bounds one probe of BenchmarkServiceCreateToFirstConnect: a probe sent before
// the ClusterIP is programmed on the client's node is not refused (an unknown address is routed out
// like any other, as without kube-proxy rules) and waits this long, so it is the resolution of the
// samples that needed more than one probe. A connect to a ready pod takes a few ms.
const benchProbeTimeout = 100 * time.Millisecond

// BenchmarkServiceCreateToFirstConnect measures, on the lab TestMain set up, how long a new Service
// takes from the API server accepting it (Create returning) to the first successful connection to
// its ClusterIP from a client pod: the EndpointSlice controller, every agent's informers, the
// service maps, then a real TCP connect. Each iteration creates a Service selecting the parity "web"
// pods (testdata/kpr.yaml) and probes it without pause from an "lbclient" pod (one probe is a
// port-forwarded request to the pod's probe server, a few ms; a probe sent too early times out
// after benchProbeTimeout), then deletes it. Reports the nearest-rank p50 and p99, and the failed
// probes per iteration before its first success: refused (a frontend without endpoints yet) and
// unanswered (no frontend yet).
//
//	STARLAB_LAB=kpr go test -tags e2e -run '^$' -bench ServiceCreateToFirstConnect -benchtime 20x ./scenarios
func BenchmarkServiceCreateToFirstConnect(b *testing.B) {
	if e2e.env == nil {
		b.Fatal("the lab was not set up (see TestMain's log)")
	}
	e := e2e.env
	ctx := b.Context()
	if _, err := e.applyWorkloads(ctx, "kpr.yaml"); err != nil {
		b.Fatal(err)
	}
	if err := e.WaitDeploymentsAvailable(ctx, 3*time.Minute, kprNamespace); err != nil {
		b.Fatal(err)
	}
	pods, err := e.Client.CoreV1().Pods(kprNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=lbclient"})
	if err != nil || len(pods.Items) == 0 {
		b.Fatalf("no lbclient pod: %v", err)
	}
	client := &pods.Items[0]
	svcs := e.Client.CoreV1().Services(kprNamespace)
	var lat []time.Duration
	i, refused, unanswered := 0, 0, 0
	b.ResetTimer()
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-create-%d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kprNamespace},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
		created, err := svcs.Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		target := net.JoinHostPort(created.Spec.ClusterIP, "8080")
		for {
			res, err := e.probeFromPodWithin(ctx, client, target, benchProbeTimeout)
			if err != nil {
				b.Fatal(err)
			}
			if res.Reachable {
				break
			}
			if strings.Contains(res.Error, "connection refused") {
				refused++
			} else {
				unanswered++
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s (%s) not reachable after a minute: %s", name, target, res.Error)
			}
		}
		lat = append(lat, time.Since(start))
		if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s := SummarizeLatencies(lat)
	b.ReportMetric(float64(s.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(s.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(refused)/float64(len(lat)), "refused/op")
	b.ReportMetric(float64(unanswered)/float64(len(lat)), "unanswered/op")
	b.Logf("service create -> first connect: n=%d min=%s p50=%s p99=%s max=%s; probes before the first success: %d refused at once (the frontend programmed, its endpoints not yet), %d unanswered for the %s probe timeout (the ClusterIP not yet programmed on the client's node)",
		s.N, s.Min.Round(time.Millisecond), s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond), s.Max.Round(time.Millisecond), refused, unanswered, benchProbeTimeout)
}
