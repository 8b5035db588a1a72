package conformance

import (
	"bytes"
	"encoding/xml"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleReport(t *testing.T) *Report {
	t.Helper()
	u := NewUniverse()
	var r Report
	r.Target, r.Flows, r.Profile = `lab "test"`, "starlab", "quick"
	for _, name := range []string{"deny-all/ingress/ns-x", "ingress/pod-b/tcp-80"} {
		var c Case
		for _, g := range Generate(u) {
			if g.Name == name {
				c = g
			}
		}
		o, err := u.Oracle(u.StateOf(c.Steps[0]))
		require.NoError(t, err)
		probes, obs := fabricate(t, u, o)
		if name == "ingress/pod-b/tcp-80" {
			setProbe(probes, "x/c", "x/a", 80, "TCP", true) // fabricated wrong cell
		}
		cells, wrong, err := Compare(o, u.Pods(), AllModes(), probes, obs)
		require.NoError(t, err)
		r.Cases = append(r.Cases, CaseResult{Name: c.Name, Tags: c.Tags, Passed: wrong == 0, Duration: time.Second,
			Steps: []StepResult{{Name: "apply", Cells: cells, Wrong: wrong, ProbeTime: 1500 * time.Millisecond, Probes: len(probes)}}})
	}
	r.Tally()
	return &r
}

func TestJUnit(t *testing.T) {
	r := sampleReport(t)
	var b bytes.Buffer
	require.NoError(t, WriteJUnit(&b, r))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(b.Bytes(), &doc))
	require.Len(t, doc.Suites, 1)
	s := doc.Suites[0]
	assert.Equal(t, 2, s.Tests)
	assert.Equal(t, 1, s.Failures)
	require.Len(t, s.Cases, 2)
	assert.Nil(t, s.Cases[0].Failure)
	require.NotNil(t, s.Cases[1].Failure)
	assert.Equal(t, "1 wrong cells", s.Cases[1].Failure.Message)
	assert.Contains(t, s.Cases[1].Failure.Text, "x/c -> x/a TCP/80: probe: allowed, expected denied")
	assert.Contains(t, s.Cases[1].SystemOut, "TCP/80")
}

func TestMarkdownAndText(t *testing.T) {
	r := sampleReport(t)
	assert.Equal(t, 1, r.Passed)
	assert.Equal(t, 1, r.Failed)
	assert.Equal(t, 1500*time.Millisecond, r.MaxProbe)
	var md bytes.Buffer
	WriteMarkdown(&md, r)
	assert.Contains(t, md.String(), "## starlab conformance: 1/2 cases passed")
	assert.Contains(t, md.String(), "| ingress | 1 | 1 |")
	assert.Contains(t, md.String(), "| apply | pod-ip | x/c | x/a | TCP/80 | denied | allowed | denied |")
	var txt bytes.Buffer
	WriteText(&txt, r, false)
	assert.NotContains(t, txt.String(), "PASS deny-all/ingress/ns-x", "passing cases only with verbose")
	assert.Contains(t, txt.String(), "FAIL ingress/pod-b/tcp-80")
	assert.Contains(t, txt.String(), "WRONG pod-ip x/c -> x/a TCP/80")
	assert.Contains(t, txt.String(), ".X*", "the wrong cell is marked: expected denied... ")
}
