package reflab

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/starlab-dev/starlab/internal/cni"
	"github.com/starlab-dev/starlab/internal/lab"
)

func TestManifestDecodes(t *testing.T) {
	objs, err := lab.DecodeManifests([]byte(Manifest("localhost/starlab/kube-proxy:abc", ModeNFTables, "172.18.0.2", 6443)))
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	assert.Equal(t, map[string]int{"ServiceAccount": 1, "ClusterRoleBinding": 1, "ConfigMap": 1, "DaemonSet": 1}, kinds)
	var ds appsv1.DaemonSet
	for _, o := range objs {
		if o.GetKind() == "DaemonSet" {
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds))
		}
	}
	require.Len(t, ds.Spec.Template.Spec.Containers, 1)
	c := ds.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "localhost/starlab/kube-proxy:abc", c.Image)
	assert.Len(t, c.VolumeMounts, 7)
	assert.Len(t, ds.Spec.Template.Spec.InitContainers[0].VolumeMounts, 7)
	assert.Equal(t, ModeNFTables, ds.Spec.Template.Annotations[modeAnnotation])
	assert.Contains(t, c.Env[1].Value, "172.18.0.2")
	var cm map[string]any
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			cm = o.Object
		}
	}
	assert.Contains(t, cm["data"].(map[string]any)["config.conf"], "mode: nftables")
	assert.Contains(t, cm["data"].(map[string]any)["config.conf"], "clusterCIDR: "+lab.PodSubnet)
}

func TestConflistIsRoutedStarlabCNI(t *testing.T) {
	// The plugin entry of the conflist parses as starlab-cni's routed mode.
	c, err := cni.ParseConf([]byte(`{"cniVersion":"1.0.0","name":"routed","type":"starlab-cni","podCIDR":"10.244.1.0/24","mode":"routed"}`))
	require.NoError(t, err)
	assert.True(t, c.Routed())
	assert.Contains(t, Conflist(netip.MustParsePrefix("10.244.1.0/24")), `"mode": "routed"`)
	assert.Error(t, ValidMode("ipvs"))
	assert.NoError(t, ValidMode(ModeIPTables))
}
