@admin-policy
Feature: Cluster-wide admin rules and a baseline over the stars demo
  ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1) gives cluster administrators two tiers around
  the namespaces' own NetworkPolicies: the Admin tier is evaluated first (priority order, then rule
  order; Accept and Deny are final, Pass hands the decision to the NetworkPolicy tier), the Baseline tier
  only for pods no NetworkPolicy selects, and what no tier decides is allowed. The policies are in
  scenarios/testdata/admin-policy. Each step is asserted three ways: the stars matrix by real TCP
  connections and by the observer's flows, "the reachability matches the policies" (the oracle's tier
  walk for every pod and port of the three namespaces, against probes and flows), and the ingress flow
  of one connection naming the policy that decided it.

  Background:
    Given the stars demo is running without policies

  Scenario: An admin Deny beats a namespace's allow, and a Pass hands the decision back
    When I apply the stars policy "default-deny"
    And I apply the stars policy "allow-ui"
    And I apply the stars policy "backend-policy"
    And I apply the stars policy "frontend-policy"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | yes      | no      |
      | frontend      | no      | ignored  | yes     |
      | backend       | no      | no       | ignored |
    And "client" connecting to "frontend" is FORWARDED by NetworkPolicy "stars/frontend-policy" in the NetworkPolicy tier

    When I apply the cluster network policy "deny-client-to-stars"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | yes     |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And "client" connecting to "frontend" is DROPPED by ClusterNetworkPolicy "deny-client-to-stars" in the Admin tier

    When I apply the cluster network policy "pass-client-to-frontend"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | yes      | no      |
      | frontend      | no      | ignored  | yes     |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And "client" connecting to "frontend" is FORWARDED by NetworkPolicy "stars/frontend-policy" in the NetworkPolicy tier after an Admin Pass by "pass-client-to-frontend"
    And "client" connecting to "backend" is DROPPED by ClusterNetworkPolicy "deny-client-to-stars" in the Admin tier

  Scenario: The baseline decides only where no NetworkPolicy selects the pod
    When I apply the cluster network policy "baseline-deny-stars"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | no       | no      |
      | client        | ignored | no       | no      |
      | frontend      | yes     | ignored  | no      |
      | backend       | yes     | no       | ignored |
    And the reachability matches the policies
    And "management-ui" connecting to "frontend" is DROPPED by ClusterNetworkPolicy "baseline-deny-stars" in the Baseline tier

    When I apply the stars policy "allow-ui"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | no      |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And "management-ui" connecting to "frontend" is FORWARDED by NetworkPolicy "stars/allow-ui" in the NetworkPolicy tier
