@stars
Feature: The stars NetworkPolicy demo
  Calico's stars tutorial on Starlab's datapath. Four workloads probe each other over their Services:
  the management UI (namespace management-ui), the client (namespace client), the frontend and the
  backend (namespace stars). Each step applies one policy file from manifests/stars/policies, waits
  until every node has programmed it and the observer hears every node, and then asserts the
  reachability matrix two ways: real TCP connections made from inside each source pod, and the
  observer's flows for exactly those connections (a FORWARDED ingress flow for each allowed one; a
  DROPPED POLICY_DENIED ingress flow naming the selecting policies for each denied one, and nothing
  forwarded). Rows are sources, columns are targets; a pod reaching itself is ignored. Beside each
  hand-written table, "the reachability matches the policies" checks every pod and Service of the
  three namespaces on every declared port against the oracle's verdicts for the policies applied.

  Background:
    Given the stars demo is running without policies

  Scenario: Policy by policy, as in the tutorial
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | yes      | yes     |
      | frontend      | yes     | ignored  | yes     |
      | backend       | yes     | yes      | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability
    And "frontend" can reach the "backend" pod on TCP 6380

    When I apply the stars policy "default-deny"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | no      | no       | no      |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | no      |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability

    When I apply the stars policy "allow-ui"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | no      |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability

    When I apply the stars policy "backend-policy"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | yes     |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability
    And "frontend" can reach the "backend" pod on TCP 6379
    But "frontend" cannot reach the "backend" pod on TCP 6380

    When I apply the stars policy "frontend-policy"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | yes      | no      |
      | frontend      | no      | ignored  | yes     |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability

  Scenario: Deleting the policies restores the full mesh
    When I apply the stars policy "default-deny"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | no      | no       | no      |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | no      |
      | backend       | no      | no       | ignored |
    And the reachability matches the policies
    When I delete the stars policies
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | yes      | yes     |
      | client        | ignored | yes      | yes     |
      | frontend      | yes     | ignored  | yes     |
      | backend       | yes     | yes      | ignored |
    And the reachability matches the policies
    And the management UI draws the stars reachability
