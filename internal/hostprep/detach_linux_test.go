package hostprep

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDaemonInheritsNoDescriptor: a descriptor this process inherited without close-on-exec (as from
// `flock FILE cmd`) must not reach a daemon we start.
func TestDaemonInheritsNoDescriptor(t *testing.T) {
	fd, err := syscall.Open(filepath.Join(t.TempDir(), "lock"), syscall.O_CREAT|syscall.O_RDWR, 0o600) // no O_CLOEXEC
	require.NoError(t, err)
	defer syscall.Close(fd)
	child := func() []string {
		out, err := exec.Command("ls", "/proc/self/fd").Output()
		require.NoError(t, err)
		return strings.Fields(string(out))
	}
	require.Contains(t, child(), strconv.Itoa(fd), "without the fix the child inherits the descriptor")
	closeInheritedOnExec()
	require.NotContains(t, child(), strconv.Itoa(fd))
}
