// Package workshop plays the talk Starlab grew from as a presenter's script: parts, each a list of
// steps (data: one YAML file per part under parts/, or a presenter's own directory). A step applies
// objects (undone by back), waits until every node has programmed them, probes the part's
// reachability matrix from inside the pods, computes the expected matrix with internal/oracle, and
// collects the flows of the step from the observer. Server serves the presenter page (ui/) and the
// JSON API it polls; Runner is the script's state machine; Cluster is everything it needs from a lab.
package workshop
