@hardening
Feature: The datapath holds through policy changes and agent restarts
  Issue 11's end-to-end checks. Test workloads in namespace hard-e2e: Deployment "server" (echo
  ports TCP 7000 and UDP 7001, HTTP 8080; Service "server" with NodePort 30081) and Deployment
  "client" (two pods spread over the nodes). Streams are real long-lived connections made from
  inside the client pods, a line every 50 ms, each echoed by the server.

  Background:
    Given the hardening test workloads are running

  # The TCP stream is cut for good only because the cut connection's conntrack entries stay as its
  # tombstone: the server retransmitting its unacknowledged answers would otherwise open the flow again
  # the other way round (TestDeniedConnectionStaysCutWhenTheServerSendsAgain).
  Scenario: A deny policy cuts an established TCP connection and a UDP stream within 1 second
    Given a "client" pod on another node than "server" holds a TCP stream and a UDP stream to the "server" pod
    When I apply the hardening NetworkPolicy "server-deny-ingress"
    Then both streams stop getting answers within 1 second of the policy being applied and keep sending
    And the observer shows both streams DROPPED POLICY_DENIED INGRESS denied by "hard-e2e/server-deny-ingress"

  Scenario: Restarting every agent breaks no allowed connection and lets no denied one through
    Given the hardening NetworkPolicy "client-egress-server-only" is applied
    And every "client" pod holds a TCP stream and a UDP stream to the "server" pod and to the Service "server"
    And this host holds a keep-alive HTTP connection to NodePort 30081 on every node
    When I restart every starlab agent while probing allowed and denied connections continuously
    Then no held stream broke, lost a line or a segment, stalled for 3 seconds or more, or stopped getting answers
    And no held NodePort connection failed or was opened again
    And every allowed probe during the restart got through
    And no denied probe during the restart got through
    And the observer shows no dropped flow in hard-e2e during the restart other than the denied probes
    And every agent reports an endpoint for each pod on its node
