// policyText names a policy as the map's panel and the policy filter show it; loaded by the page
// (index.html) and by the map's worker (view-worker.js).
"use strict";
self.starlabPolicyText = function (p) {
  if (!p.name) return p.kind;
  if (p.kind === "ClusterNetworkPolicy") return `${p.kind} ${p.name}` + (p.rule || p.action ? ` [rule ${p.rule || ""}${p.action ? " " + p.action : ""}]` : "");
  return `${p.kind} ${p.namespace}/${p.name}`;
};
