package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLookupWorkload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lookup  func(string) (Workload, error)
		in      string
		wantRef PodRef
		wantErr string
	}{
		{"shop db", lookupShopWorkload, "db", PodRef{"shop", "app=db"}, ""},
		{"stars frontend", lookupStarsWorkload, "frontend", PodRef{"stars", "role=frontend"}, ""},
		{"unknown shop", lookupShopWorkload, "cart", PodRef{}, `unknown shop workload "cart": use shopper, orders, inventory or db`},
		{"unknown stars", lookupStarsWorkload, "db", PodRef{}, `unknown stars workload "db": use management-ui, client, frontend or backend`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := tc.lookup(tc.in)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.in, w.Name)
			assert.Equal(t, tc.wantRef, w.Ref)
		})
	}
}

func TestOrList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a or b"},
		{[]string{"a", "b", "c"}, "a, b or c"},
	} {
		assert.Equal(t, tc.want, orList(tc.in))
	}
}

func TestPolicyStepFile(t *testing.T) {
	files := []string{"stars/policies/01-default-deny.yaml", "stars/policies/02-allow-ui.yaml"}
	f, ok := policyStepFile(files, "allow-ui")
	require.True(t, ok)
	assert.Equal(t, "stars/policies/02-allow-ui.yaml", f)
	_, ok = policyStepFile(files, "allow")
	assert.False(t, ok, "a step name matches whole, not as a prefix")
}

func TestStarsPolicyFiles(t *testing.T) {
	for _, name := range []string{"default-deny", "allow-ui", "backend-policy", "frontend-policy"} {
		f, err := starsPolicyFile(name)
		require.NoError(t, err, name)
		assert.Contains(t, f, name)
	}
	_, err := starsPolicyFile("nope")
	assert.ErrorContains(t, err, `unknown stars policy "nope"`)
}
