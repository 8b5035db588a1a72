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

  # Kube-proxy parity (issue 12): workloads in namespace kpr-e2e (testdata/kpr.yaml): clients
  # "lbclient" on two nodes; "slow", one server next to a client that keeps serving 60 s after it is
  # told to stop, behind Services "slow" (Cluster), "slow-local" (internal and external traffic
  # policy Local, NodePort 30082) and "slow-pna" (publishNotReadyAddresses); "unready", a server
  # that never gets ready, behind "unready" (publishNotReadyAddresses) and "unready-plain"; "web"
  # (also behind "web-np", NodePort 30083). "slow-np" (NodePort 30084) is "slow" with
  # externalTrafficPolicy Cluster: every node forwards to it.
  @kpr
  Scenario: A Service whose only endpoint is terminating but serving still answers
    Given the kube-proxy parity workloads are running
    When I scale Deployment "slow" to 0 replicas while its pod keeps serving
    Then the parity pod "lbclient" reaches "slow.kpr-e2e:8080"
    And the parity pod "lbclient" reaches "slow-pna.kpr-e2e:8080"
    And the "lbclient" pod on the node of the "slow" pod reaches "slow-local.kpr-e2e:8080"
    And NodePort 30082 answers from this host on the node of the "slow" pod
    And NodePort 30084 answers from this host on the node of the "slow" pod
    And NodePort 30084 answers from this host on a node other than that of the "slow" pod
    And the health check port of Service "slow-lb" answers 503 with 0 local endpoints on the node of the "slow" pod

  @kpr
  Scenario: publishNotReadyAddresses reaches a pod that is not ready
    Given the kube-proxy parity workloads are running
    Then the parity pod "lbclient" reaches "unready.kpr-e2e:8080"
    And the parity pod "lbclient" is refused by "unready-plain.kpr-e2e:8080"

  # Isolated from the scenario before (its terminating but serving "slow" pod is force-deleted and
  # waited for): internalTrafficPolicy Local would rightly use it on its node.
  @kpr
  Scenario: internalTrafficPolicy Local keeps a pod's Service traffic on its node
    Given the kube-proxy parity workloads are running
    Then the "lbclient" pod on the node of the "slow" pod reaches "slow-local.kpr-e2e:8080"
    And the "lbclient" pod on another node than the "slow" pod is refused by "slow-local.kpr-e2e:8080"

  @kpr
  Scenario: The headless and service-proxy-name labels take a Service away, removing them brings it back
    Given the kube-proxy parity workloads are running
    When I set the label "service.kubernetes.io/service-proxy-name=other-proxy" on the Service "web"
    Then the parity pod "lbclient" cannot reach "web.kpr-e2e:8080"
    When I remove the label "service.kubernetes.io/service-proxy-name" from the Service "web"
    Then the parity pod "lbclient" reaches "web.kpr-e2e:8080"
    When I set the label "service.kubernetes.io/headless=" on the Service "web"
    Then the parity pod "lbclient" cannot reach "web.kpr-e2e:8080"
    When I remove the label "service.kubernetes.io/headless" from the Service "web"
    Then the parity pod "lbclient" reaches "web.kpr-e2e:8080"

  @kpr
  Scenario: A recreated Service and a Service scaled to 0 and back answer
    Given the kube-proxy parity workloads are running
    Then the parity pod "lbclient" reaches "web.kpr-e2e:8080"
    When I recreate the Service "web" with a new ClusterIP
    Then the parity pod "lbclient" reaches "web.kpr-e2e:8080"
    When I scale the parity Deployment "web" to 0 replicas
    Then the parity pod "lbclient" is refused by "web.kpr-e2e:8080"
    When I scale the parity Deployment "web" to 2 replicas
    Then the parity pod "lbclient" reaches "web.kpr-e2e:8080"

  @kpr
  Scenario: healthCheckNodePort answers with the node's local endpoint count
    Given the kube-proxy parity workloads are running
    Then the health check port of Service "slow-lb" answers 200 with 1 local endpoint on the node of the "slow" pod
    And the health check port of Service "slow-lb" answers 503 with 0 local endpoints on a node other than the "slow" pod

  @kpr
  Scenario: Hairpin: a pod reaches itself through its own Service
    Given the kube-proxy parity workloads are running
    Then the parity pod "slow" reaches "slow.kpr-e2e:8080"
    And the parity pod "slow" reaches "slow-local.kpr-e2e:8080"

  # A connection to a backend whose pod is gone is refused at once (ENDPOINT_GONE), never routed out
  # of the node to hang (TestStaleConntrackToGonePodRefused).
  @kpr @soak
  Scenario: Scaling a Service 0, 5, 0, 3 under continuous connections: each succeeds or is refused at once
    Given the kube-proxy parity workloads are running
    When while the parity pod "lbclient" connects to "web.kpr-e2e:8080" continuously, I scale Deployment "web" through 0, 5, 0, 3 replicas

  # The node's own clients (socket LB, bpf/sock.c): processes in the node's network namespace, as
  # hostNetwork pods are, run through `docker exec` in the kind node container (its cgroup).
  @kpr
  Scenario: The node itself reaches ClusterIPs and its own NodePort
    Given the kube-proxy parity workloads are running
    Then every node reaches the ClusterIP of Service "web" on port 8080
    And every node reaches NodePort 30083 on its own address
    And every node is refused by the ClusterIP of Service "empty-kpr" on port 8080

  @kpr
  Scenario: internalTrafficPolicy Local from the node itself
    Given the kube-proxy parity workloads are running
    Then the node of the "slow" pod reaches the ClusterIP of Service "slow-local" on port 8080
    And a node other than that of the "slow" pod is refused by the ClusterIP of Service "slow-local" on port 8080

  # Session affinity (issue 12): "web-affinity" (sessionAffinity ClientIP, timeoutSeconds 5, also
  # NodePort 30085) over the "web" pods, scaled to 4 so that a new choice shows. A client keeps its
  # backend while its connections come less than the timeout apart; after the timeout its next
  # connection is load balanced anew (kube-proxy's `recent` match, Cilium's lb4_affinity).
  @kpr
  Scenario: Session affinity with timeoutSeconds, for ClusterIP and NodePort
    Given the kube-proxy parity workloads are running
    When I scale the parity Deployment "web" to 4 replicas
    Then connections from the parity pod "lbclient" to the ClusterIP of Service "web-affinity" within its affinity timeout reach one backend
    And connections from the parity pod "lbclient" to the ClusterIP of Service "web-affinity" each after its affinity timeout reach more than one backend
    And connections from this host to the NodePort of Service "web-affinity" within its affinity timeout reach one backend
    And connections from this host to the NodePort of Service "web-affinity" each after its affinity timeout reach more than one backend

  # hostNetwork pods (issue 12): "hostnet", a probe server in the node's own network namespace on
  # each worker (port 18090), behind "hostnet-local" (internalTrafficPolicy Local). Their
  # connections are the node's own (socket LB), their DNS the cluster's (ClusterFirstWithHostNet).
  @kpr
  Scenario: internalTrafficPolicy Local from and to hostNetwork pods
    Given the kube-proxy parity workloads are running
    Then the "hostnet" pod on the node of the "slow" pod reaches "slow-local.kpr-e2e:8080"
    And the "hostnet" pod on another node than the "slow" pod is refused by "slow-local.kpr-e2e:8080"
    And the "hostnet" pod on another node than the "slow" pod reaches "slow.kpr-e2e:8080"
    And connections from each "lbclient" pod to "hostnet-local.kpr-e2e:8080" reach only the "hostnet" pod on its own node

  # From outside the nodes (issue 12): client containers of this test on the kind network route a
  # Service's external address through one node after the other, as a router in front of the
  # cluster would. "web-ext" gets an externalIP; "web-lb" (type LoadBalancer) an ingress IP in its
  # status, as a LoadBalancer controller on kind (cloud-provider-kind style) sets it, then
  # loadBalancerSourceRanges that admit "outside-a" only: "outside-b" is dropped (kube-proxy's
  # firewall chain), and the observer says why.
  @kpr
  Scenario: externalIPs and LoadBalancer ingress IPs from outside the nodes, loadBalancerSourceRanges
    Given the kube-proxy parity workloads are running
    And a client container "outside-a" on the kind network
    And a client container "outside-b" on the kind network
    When I set an external IP of the kind network on the Service "web-ext"
    Then the client container "outside-a" reaches the external address of Service "web-ext" on port 8080 through every node
    When a LoadBalancer controller gives the Service "web-lb" an ingress IP of the kind network
    Then the client container "outside-a" reaches the external address of Service "web-lb" on port 8080 through every node
    And the client container "outside-b" reaches the external address of Service "web-lb" on port 8080 through every node
    When I set loadBalancerSourceRanges of the Service "web-lb" to the address of the client container "outside-a"
    Then the client container "outside-b" cannot reach the external address of Service "web-lb" on port 8080 through every node
    And the client container "outside-a" reaches the external address of Service "web-lb" on port 8080 through every node
    And the observer shows a DROPPED flow from the client container "outside-b" to the external address of Service "web-lb" with drop reason LB_SOURCE_RANGE_DENIED
