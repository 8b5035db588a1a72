// Package demo holds the demo workloads of the lab, one static binary with several modes:
//
//   - probe: a stars workload (client, frontend, backend). It accepts connections on its ports, probes its
//     peers on an interval and answers GET /status; GET /probe makes one real connection from inside the
//     pod on demand (the scenarios use it). POST /streams keeps a connection open from inside the pod
//     and sends a line every interval to a peer's echo port (--echo TCP, --listen-udp UDP), recording
//     the answers, so a test sees when a connection stops or breaks (stream.go).
//   - management-ui: fetches every probe's /status through the Services and draws the star graph.
//   - api and db: the second demo, two small REST APIs (orders, inventory) over one tiny key-value db.
//
// Every HTTP server of every mode also answers GET /probe and GET /healthz.
package demo
