// Package scenarios holds the Gherkin step definitions (godog) that drive a real Starlab lab, and the
// helpers they share. The features live in ../features/*.feature.
//
// # Adding steps for a new feature (the hook)
//
// Each area keeps its steps in its own file, scenarios/<area>_steps.go: a type per feature that
// holds what the scenario's steps remember, a constructor, one named method per step, and a steps()
// table of Gherkin expressions and methods:
//
//	type xSteps struct {
//		w *World
//		e *Env
//	}
//
//	func newXSteps(w *World) *xSteps { return &xSteps{w: w, e: w.Env} }
//
//	func (s *xSteps) steps() []step {
//		return []step{
//			{`^pod "([^"]*)" can reach "([^"]*)"$`, s.podCanReach},
//		}
//	}
//
//	func (s *xSteps) podCanReach(ctx context.Context, from, to string) error {
//		res, err := s.e.Probe(ctx, PodRef{Namespace: "stars", Selector: "role=" + from}, to, "tcp")
//		require.NoError(godog.T(ctx), err)
//		assert.True(godog.T(ctx), res.Reachable, "probe %s -> %s: %s", from, to, res.Error)
//		return nil
//	}
//
// and adds one line, newXSteps(w).steps(), to [scenarioSteps] in suite.go. Nothing else is needed:
// both `go test ./scenarios` (TestMain in suite_test.go, scenarios as subtests) and `starlab test`
// (in-process, no testing.T) call [InitializeScenario], which builds a fresh [World] and fresh steps
// values per scenario. Step methods take a context.Context first and use godog.T(ctx) with testify.
// TestEveryFeatureStepIsDefinedOnce checks every feature step against the tables without a lab.
//
// A feature's workloads are YAML files in testdata/ (embedded), applied with the demo image
// substituted (Env.applyWorkloads).
//
// # Shared helpers (on *Env, shared by all scenarios of one run)
//
//   - Apply / Delete: server-side apply of YAML manifests (files, embedded manifests.FS paths, or bytes);
//     they return the highest resourceVersion written, to hand to WaitProgrammed.
//   - WaitProgrammed(ctx, rv): every node's annotation starlab.dev/policy-revision >= rv and the observer
//     reports every node connected; polls with a deadline, never a fixed sleep.
//   - Probe(ctx, from, target, protocol): a real connection from inside a demo probe pod (its /probe
//     endpoint, reached by a client-go port-forward, so the test's own access is not subject to policy).
//   - Observe(ctx, query), ObserverStatus, ObserverGraph, ObserverMetrics: the observer API through
//     observer.Client over a port-forward; the agents' API through agentapi.Client (agentClient).
//   - CheckMatrix(ctx, expected, lookup): a whole reachability table (MatrixFromTable of a Gherkin
//     table, rows = sources, columns = targets, cells yes/no/ignored) checked by real TCP connections
//     from inside the source pods and by the observer's flows of exactly those connections; returns
//     a MatrixCheck (the side-by-side report, OK, the truth cells). lookup maps table names to Workload
//     (pod selector + Service address).
//   - Failure bundles: a step that finds wrong cells (a reachability table, "the reachability matches
//     the policies") writes a bundle with bundle.Record (feature file, scenario, step, truth cells,
//     the step's flows, the objects Env.Apply/Delete applied in the scenario, in order) into
//     <ReportDir>/bundles/ and names it in the failure (World.writeFailureBundle; Env.BundleFailures).
//     Any other failing step gets one too, from the step hook (World.afterStep): the record holds the
//     step's error instead of cells, and `starlab repro` compares the failing step.
//   - WaitDeploymentsAvailable, DumpState, AppendFlows, PortForward, Pod.
//   - Env.ReportDir: where the report bundle (junit, cucumber json, flows NDJSON, object dumps) goes.
//
// Per-scenario cleanup: register it with World.Cleanup(func(ctx) error); it runs after the scenario.
package scenarios
