package bench

import (
	"bytes"
	"encoding/xml"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/demo"
)

func pt(dp string, n int, p50, p99, rps float64) ServicePoint {
	return ServicePoint{Datapath: dp, Services: n, FirstConnectMs: 5, RSSMiB: 30, Quiet: Quiet{Busy: 0.12, Reached: true},
		Latency:    demo.LoadResult{Successes: 100, P50Us: p50, P99Us: p99},
		Throughput: demo.LoadResult{Successes: 100, PerSecond: rps}}
}

func sampleReport() *ServicesReport {
	pts := []ServicePoint{
		pt(Starlab, 10, 50, 100, 2000), pt(Starlab, 10000, 52, 105, 1900),
		pt(KubeProxyIPTables, 10, 50, 100, 2000), pt(KubeProxyIPTables, 10000, 200, 400, 500),
	}
	return &ServicesReport{Points: pts, Options: OptionsSummary{Counts: []int{10, 10000}}, Ratios: ratios(pts)}
}

func TestRatios(t *testing.T) {
	r := sampleReport()
	byName := map[string]Ratio{}
	for _, x := range r.Ratios {
		byName[x.Name] = x
	}
	flat := byName["starlab p99 connect, 10000 / 10 services"]
	assert.InDelta(t, 1.05, flat.Value, 1e-9)
	require.NotNil(t, flat.Met)
	assert.True(t, *flat.Met)
	vs := byName["kube-proxy-iptables / starlab p99 connect, 10000 services"]
	assert.InDelta(t, 400.0/105, vs.Value, 1e-9)
	require.NotNil(t, vs.Met)
	assert.True(t, *vs.Met)
	assert.InDelta(t, 1900.0/500, byName["starlab / kube-proxy-iptables connections/s, 10000 services"].Value, 1e-9)
	assert.InDelta(t, 4.0, byName["kube-proxy-iptables p99 connect, 10000 / 10 services"].Value, 1e-9)
}

func TestValidate(t *testing.T) {
	r := sampleReport()
	require.NoError(t, Validate(r, []string{Starlab, KubeProxyIPTables}))
	assert.ErrorContains(t, Validate(r, []string{KubeProxyNFTables}), "not measured")
	r.Points[1].Throughput.Failures = 3
	assert.ErrorContains(t, Validate(r, []string{Starlab}), "3 failed")
	r = sampleReport()
	r.Points[0].Latency.P50Us = 0
	assert.ErrorContains(t, Validate(r, []string{Starlab}), "implausible")
}

func TestWriteSVGAndTable(t *testing.T) {
	r := sampleReport()
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, r))
	var doc struct {
		XMLName   xml.Name `xml:"svg"`
		Polylines []struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
	}
	require.NoError(t, xml.Unmarshal(b.Bytes(), &doc))
	assert.Len(t, doc.Polylines, 4) // p99 and p50 per datapath
	b.Reset()
	require.NoError(t, WriteTable(&b, r))
	assert.Contains(t, b.String(), "kube-proxy-iptables")
	assert.Contains(t, b.String(), "goal >= 2 (Starlab twice as fast): met")
	assert.Contains(t, b.String(), " 12%")
	assert.NotContains(t, b.String(), "not quiet")
}

func TestSpread(t *testing.T) {
	ips := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	assert.Equal(t, []string{"b", "d", "f", "h"}, spread(ips, 4))
	assert.Equal(t, ips, spread(ips, 10))
}
