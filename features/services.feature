@services
Feature: Pod networking and Services without kube-proxy
  Starlab's agent is the CNI (routed /32 pods, routes to the other nodes' pod CIDRs) and the
  kube-proxy replacement (ClusterIP and NodePort translated by eBPF). Test workloads in namespace
  svc-e2e: Deployment "web" (Service "web", NodePort 30080), Deployment "client", and Service
  "empty" that selects nothing. Connections are real: made from inside the client pods, from this
  host and from the kind nodes.

  Background:
    Given the services test workloads are running

  Scenario: The cluster is up on Starlab's datapath
    Then every node is Ready
    And CoreDNS is Running and Ready
    And no node has kube-proxy rules

  Scenario: A pod resolves a Service by name and reaches it
    Then pod "client" reaches "web.svc-e2e.svc.cluster.local:8080"
    And pod "client" reaches "web.svc-e2e:8080"
    And pod "client" reaches "kubernetes.default:443"

  Scenario: Pods reach each other across nodes
    Then every "client" pod reaches every "web" pod on another node by pod IP

  Scenario: NodePort from the host and from another node
    Then NodePort 30080 answers from this host on every node
    And NodePort 30080 answers from every node on every other node

  Scenario: Scaling a Deployment changes the Service backends
    When I scale Deployment "web" to 3 replicas
    Then connections from "client" to "web.svc-e2e:8080" reach exactly the 3 "web" pods
    When I scale Deployment "web" to 1 replicas
    Then connections from "client" to "web.svc-e2e:8080" reach exactly the 1 "web" pods

  Scenario: A Service without endpoints refuses connections at once
    Then pod "client" is refused by "empty.svc-e2e:80" within 500 ms

  Scenario: Problems are reported as Kubernetes Events and fail closed
    When I apply the Service "bad-annotation" with annotation "starlab.dev/nodeport" set to "maybe"
    Then every node reports a Warning Event "InvalidAnnotation" on Service "bad-annotation"
    When I apply the NetworkPolicy "web-unrepresentable" that the datapath cannot represent
    Then a node reports a Warning Event "PolicyUnrepresentable" on NetworkPolicy "web-unrepresentable"
    And pod "client" cannot reach "web.svc-e2e:8080"
    When I delete the NetworkPolicy "web-unrepresentable"
    Then pod "client" reaches "web.svc-e2e:8080"

  Scenario: Restarting the agents keeps the pods' datapath
    When I restart the starlab agents
    Then every agent reports an endpoint for each pod on its node
    And pod "client" reaches "web.svc-e2e:8080"
    And every "client" pod reaches every "web" pod on another node by pod IP
    And NodePort 30080 answers from this host on every node

  @uninstall
  Scenario: Uninstalling the chart leaves the nodes clean, reinstalling restores the pods
    When I uninstall the starlab chart
    Then no node has the starlab CNI config, CNI plugin or pinned datapath
    When I reinstall the starlab chart
    Then every node is Ready
    And pod "client" reaches "web.svc-e2e:8080"
    And every "client" pod reaches every "web" pod on another node by pod IP
