@conformance
Feature: NetworkPolicy conformance: computed, probed and observed
  No matrix here is written by hand. The oracle (internal/oracle, an evaluator of the NetworkPolicy
  specification written apart from the datapath's compiler) computes what the policies allow; every
  connection is then made for real from inside the source pod, to the pod IPs and to the ClusterIPs
  of the pods' Services, on every TCP and UDP port they declare; and the observer's flows of exactly
  those connections must agree: forwarded at the destination when allowed, dropped naming the
  policies that select the denying side when denied. Namespaces x, y and z hold pods a, b and c (the
  demo probe serving TCP and UDP on 80 and 81), each with its own Service.

  Scenario Outline: A generated case applied step by step matches the oracle
    Given the conformance pods a, b and c run in namespaces x, y and z
    Then the reachability matches the policies
    When I apply the generated conformance case "<case>"
    Then the reachability matches the policies

    Examples:
      | case                                 |
      | ingress/ns-in-y-z/named-serve-81-tcp |
      | egress/ipblock-except-y-b/all-ports  |
      | update/ingress/namespace-relabelled  |

  Scenario: A node that enforces nothing fails the suite, and every wrong cell is named
    The agent's test-only switch (a file in its state directory on the node; no flag or chart
    value sets it) makes one agent program its pods without enforcement, as a broken CNI would.
    Given the conformance pods a, b and c run in namespaces x, y and z
    And the agent on the node of pod "x/a" skips enforcement
    When I run starlab conformance with the "quick" profile, keeping the pods
    Then starlab conformance failed, naming every wrong cell, each decided on that node
    And its failure names the failure bundle of its first failed case, with that case's wrong cells, objects and flows

  Scenario: The quick generated set passes, and its JUnit report lists every case (last: it deletes x, y and z)
    When I run starlab conformance with the "quick" profile
    Then every conformance case passed and the JUnit report lists each one
