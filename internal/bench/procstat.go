package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
)

// procStat is the CPU time and resident memory of the processes of one name, summed over a lab's nodes.
type procStat struct {
	Processes  int
	CPUSeconds float64
	RSSBytes   int64
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// procScript prints "<utime> <stime> <rss kB>" for every process whose comm is $1.
const procScript = `for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = "$1" ] || continue
  s=$(cat "$d/stat" 2>/dev/null) || continue
  r=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "$d/status" 2>/dev/null)
  echo "$(echo "${s##*) }" | cut -d' ' -f12,13) ${r:-0}"
done`

// readProcStat reads the processes named comm (kube-proxy, starlab-agent) in every node: the nodes are
// containers sharing the host kernel, and a node's pid namespace holds its pods' processes.
func readProcStat(ctx context.Context, ns []nodes.Node, comm string) (procStat, error) {
	var st procStat
	for _, n := range ns {
		var out, stderr bytes.Buffer
		if err := n.CommandContext(ctx, "sh", "-c", procScript, "sh", comm).SetStdout(&out).SetStderr(&stderr).Run(); err != nil {
			return st, fmt.Errorf("read /proc of %s in node %s: %w: %s", comm, n.String(), err, strings.TrimSpace(stderr.String()))
		}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 {
				continue
			}
			ut, err1 := strconv.ParseInt(f[0], 10, 64)
			stt, err2 := strconv.ParseInt(f[1], 10, 64)
			rss, err3 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return st, fmt.Errorf("node %s: unexpected /proc line %q for %s", n.String(), sc.Text(), comm)
			}
			st.Processes++
			st.CPUSeconds += float64(ut+stt) / clockTicks
			st.RSSBytes += rss << 10
		}
	}
	if st.Processes == 0 {
		return st, fmt.Errorf("no %s process in the lab's nodes", comm)
	}
	return st, nil
}
