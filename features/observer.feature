@observer
Feature: The cluster observer shows every flow, the service map and metrics
  Starlab's observer merges the flows of every node's agent. Test workloads in namespace obs-e2e:
  Deployment "server" (Service "server", TCP 8080), Deployments "allowed" and "denied", and the
  NetworkPolicy "server-from-allowed" that lets only "allowed" reach "server". Connections are real,
  made from inside the pods; the flows, the graph, the metrics and the UI come from the live observer.

  Background:
    Given the observer test workloads are running
    And I remember the observer metrics

  Scenario: Allowed and denied connections are observed with verdict, reason, direction and policy
    When "allowed" connects to "server.obs-e2e:8080"
    Then within 1 second the observer has the connection from "allowed" as FORWARDED INGRESS allowed by "obs-e2e/server-from-allowed"
    When "denied" fails to connect to "server.obs-e2e:8080"
    Then within 1 second the observer has the connection from "denied" as DROPPED POLICY_DENIED INGRESS denied by "obs-e2e/server-from-allowed"
    And `starlab observe -o json` returns the flows of the connection from "allowed"
    And `starlab observe -o json` returns the flows of the connection from "denied"

  Scenario: The service map and the metrics follow the traffic
    When "allowed" connects to "server.obs-e2e:8080"
    Then within 1 second the observer has the connection from "allowed" as FORWARDED INGRESS allowed by "obs-e2e/server-from-allowed"
    When "denied" fails to connect to "server.obs-e2e:8080"
    Then within 1 second the observer has the connection from "denied" as DROPPED POLICY_DENIED INGRESS denied by "obs-e2e/server-from-allowed"
    And the observer graph has a forwarded edge from "obs-e2e/allowed" to "obs-e2e/server"
    And the observer graph has a dropped edge from "obs-e2e/denied" to "obs-e2e/server" decided by "obs-e2e/server-from-allowed"
    And the observer metrics grew by the observed flows on the server's node

  Scenario: The UI draws the live service map
    When "denied" fails to connect to "server.obs-e2e:8080"
    Then within 1 second the observer has the connection from "denied" as DROPPED POLICY_DENIED INGRESS denied by "obs-e2e/server-from-allowed"
    And the observer UI in headless Chromium draws "obs-e2e/server" and a dropped edge from "obs-e2e/denied"
