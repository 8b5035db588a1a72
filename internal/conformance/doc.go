// Package conformance is the `starlab conformance` suite: generated NetworkPolicy cases in the style
// of cyclonus (namespaces x, y, z with pods a, b, c serving TCP and UDP on 80 and 81), each applied to
// a cluster, probed with real connections from inside every pod, and compared with the expectation
// internal/oracle computes from the policies and, where a Starlab observer runs, with the flows of
// exactly those connections (verdict and the deciding policies in allowed_by / denied_by).
//
// Files: model.go (cases, steps, states), universe.go (the fixed pods and ports, oracle input),
// gen_*.go (the generators, one policy feature each), select.go (tags and profiles), kube*.go (the
// cluster side: workloads, apply, wait), probe.go (concurrent probes through the demo's
// /probe/batch), flows.go (observer flows of the probes), compare.go (the three truth tables),
// run.go (the case loop), report_*.go (text, Markdown, JUnit).
package conformance
