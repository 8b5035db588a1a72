package progress

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fakeClock(t0 time.Time) (func() time.Time, func(time.Duration)) {
	now := t0
	return func() time.Time { return now }, func(d time.Duration) { now = now.Add(d) }
}

func TestPlainOutput(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf)
	now, advance := fakeClock(time.Unix(0, 0))
	r.now = now

	s := r.Start("build")
	s.SetTotal(4)
	advance(2 * time.Second)
	s.Add(1)
	s.Add(1)
	s.Logf("note %d", 7)
	advance(2 * time.Second)
	s.Done()
	s.Done() // second end is ignored
	err := r.Run("broken", func() error { return errors.New("boom") })
	require.EqualError(t, err, "boom")

	assert.Equal(t, "==> build\n"+
		"      0% 0/4 0s\n"+
		"     25% 1/4 2s ETA 6s\n"+
		"     50% 2/4 2s ETA 2s\n"+
		"    note 7\n"+
		"  ok   build (4s)\n"+
		"==> broken\n"+
		"  FAIL broken (0s): boom\n", buf.String())
}

func TestNilReporterIsSilent(t *testing.T) {
	var r *Reporter
	s := r.Start("x")
	s.SetTotal(3)
	s.Add(1)
	s.Logf("y")
	s.Done()
	require.EqualError(t, s.Fail(errors.New("e")), "e")
	require.NoError(t, r.Run("z", func() error { return nil }))
}

func TestETA(t *testing.T) {
	tests := []struct {
		elapsed     time.Duration
		done, total int64
		want        time.Duration
		ok          bool
	}{
		{10 * time.Second, 1, 4, 30 * time.Second, true},
		{10 * time.Second, 4, 4, 0, true},
		{10 * time.Second, 0, 4, 0, false},
		{10 * time.Second, 5, 4, 0, false},
		{10 * time.Second, 1, 0, 0, false},
	}
	for _, tt := range tests {
		got, ok := ETA(tt.elapsed, tt.done, tt.total)
		assert.Equal(t, tt.ok, ok)
		assert.Equal(t, tt.want, got)
	}
}
