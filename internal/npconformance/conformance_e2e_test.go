//go:build e2e

package npconformance

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	api "sigs.k8s.io/network-policy-api/apis/v1beta1"
	confv1a1 "sigs.k8s.io/network-policy-api/conformance/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/conformance/tests"
	"sigs.k8s.io/network-policy-api/conformance/utils/flags"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
	"sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/npconformance/nosctptests"
)

// crdName is the ClusterNetworkPolicy CRD; the chart installs it (the harness applies the module's
// experimental channel only when a lab has none yet).
const crdName = "clusternetworkpolicies.policy.networking.k8s.io"

// TestConformanceProfiles is upstream's conformance_profile_test.go TestConformanceProfiles against the
// lab STARLAB_LAB, with the flags its README gives defaulted when not passed after -args:
// --conformance-profiles=ClusterNetworkPolicy, the implementation metadata, --all-features when the
// experimental channel is installed, --report-output=$STARLAB_REPORT_DIR/network-policy-api-conformance-report.yaml.
func TestConformanceProfiles(t *testing.T) {
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		t.Fatal("STARLAB_LAB is not set: name a lab brought up with `starlab up --workers 2 --test-images` " +
			"(e.g. STARLAB_LAB=starlab go test -tags e2e ./internal/npconformance/), or run `make test-e2e`")
	}
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	c, err := client.New(cfg, client.Options{})
	require.NoError(t, err)
	require.NoError(t, api.Install(c.Scheme()))
	require.NoError(t, apiextensionsv1.AddToScheme(c.Scheme()))
	clientSet, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	channel := ensureCRD(t, c)
	setDefault(t, "conformance-profiles", Profile)
	setDefault(t, "organization", "starlab-dev")
	setDefault(t, "project", "starlab")
	setDefault(t, "url", "https://github.com/starlab-dev/starlab")
	setDefault(t, "version", version())
	setDefault(t, "contact", "@starlab-dev/maintainers")
	setDefault(t, "additional-info", "make test (layer test-e2e), lab "+name)
	if dir := os.Getenv("STARLAB_REPORT_DIR"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		setDefault(t, "report-output", filepath.Join(dir, ReportFile))
	}
	if channel == "experimental" && *flags.SupportedFeatures == "" && !isSet("all-features") {
		require.NoError(t, flag.Set("all-features", "true"))
	}

	opts := suite.Options{
		Client:                     c,
		ClientSet:                  clientSet,
		KubeConfig:                 *cfg,
		Debug:                      *flags.ShowDebug,
		CleanupBaseResources:       *flags.CleanupBaseResources,
		SupportedFeatures:          suite.ParseSupportedFeatures(*flags.SupportedFeatures),
		ExemptFeatures:             suite.ParseSupportedFeatures(*flags.ExemptFeatures),
		EnableAllSupportedFeatures: *flags.EnableAllSupportedFeatures,
	}
	if !KernelHasSCTP() {
		t.Logf("this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): EPROTONOSUPPORT): the base workloads run without "+
			"their agnhost porter SCTP servers (which would exit and keep their pods unready), and these %d tests, which probe SCTP, "+
			"are skipped and reported as skipped: %s", len(SCTPTests), strings.Join(SCTPTests, ", "))
		opts.FS = NoSCTPManifests()
		opts.BaseManifests = "nosctp/base/manifests.yaml"
		opts.SkipTests = SCTPTests
	}
	impl, err := suite.ParseImplementation(*flags.ImplementationOrganization, *flags.ImplementationProject, *flags.ImplementationURL,
		*flags.ImplementationVersion, *flags.ImplementationContact, *flags.ImplementationAdditionalInformation)
	require.NoError(t, err)
	t.Logf("conformance profiles %s, channel %s, all features %t, supported features [%s], exempt [%s], report %s",
		*flags.ConformanceProfiles, channel, *flags.EnableAllSupportedFeatures, *flags.SupportedFeatures, *flags.ExemptFeatures, *flags.ReportOutput)
	cSuite, err := suite.NewConformanceProfileTestSuite(suite.ConformanceProfileOptions{
		Options:             opts,
		Implementation:      *impl,
		ConformanceProfiles: suite.ParseConformanceProfiles(*flags.ConformanceProfiles),
	})
	require.NoError(t, err)
	cSuite.Setup(t)
	require.NoError(t, cSuite.Run(t, testsFor(opts.FS != nil)))
	report, err := cSuite.Report()
	require.NoError(t, err)
	raw, err := yaml.Marshal(report)
	require.NoError(t, err)
	if out := *flags.ReportOutput; out != "" {
		require.NoError(t, os.WriteFile(out, raw, 0o644))
	}
	t.Logf("Conformance report:\n%s", raw)
	logReport(t, report)
	if opts.FS == nil || os.Getenv(WithoutSCTPProbesEnv) == "" {
		return
	}
	// The SCTP tests' TCP and UDP probes, on the same base workloads: the tests rewritten with only their
	// SCTP probes removed (nosctptests), reported on their own so the upstream report stays upstream's.
	require.NoError(t, cSuite.Run(t, rebase(nosctptests.ConformanceTests)))
	extra, err := cSuite.Report()
	require.NoError(t, err)
	extra.Implementation.AdditionalInformation += "; the suite's tests that probe SCTP, with only their SCTP probes removed (this kernel has no SCTP)"
	raw, err = yaml.Marshal(extra)
	require.NoError(t, err)
	if out := *flags.ReportOutput; out != "" {
		require.NoError(t, os.WriteFile(strings.TrimSuffix(out, ".yaml")+"-without-sctp-probes.yaml", raw, 0o644))
	}
	t.Logf("Report of the SCTP tests without their SCTP probes:\n%s", raw)
	logReport(t, extra)
}

func logReport(t *testing.T, report *confv1a1.ConformanceReport) {
	for _, p := range report.ProfileReports {
		logStatus(t, p.Name+" standard", &p.Standard)
		if p.Experimental != nil {
			logStatus(t, p.Name+" experimental", &p.Experimental.Status)
		}
	}
}

func logStatus(t *testing.T, what string, st *confv1a1.Status) {
	t.Logf("%s: %s, passed %d, failed %d, skipped %d; failed: %s; skipped: %s", what, st.Result, st.Passed, st.Failed, st.Skipped,
		strings.Join(st.FailedTests, ", "), strings.Join(st.SkippedTests, ", "))
}

// testsFor returns the suite's tests; with the no-SCTP manifests every manifest path is rebased under
// nosctp/ (that FS's root).
func testsFor(noSCTP bool) []suite.ConformanceTest {
	if noSCTP {
		return rebase(tests.ConformanceTests)
	}
	return tests.ConformanceTests
}

// rebase returns cts with every manifest path under nosctp/.
func rebase(cts []suite.ConformanceTest) []suite.ConformanceTest {
	out := make([]suite.ConformanceTest, len(cts))
	for i, ct := range cts {
		ms := make([]string, len(ct.Manifests))
		for j, m := range ct.Manifests {
			ms[j] = "nosctp/" + m
		}
		ct.Manifests = ms
		out[i] = ct
	}
	return out
}

// ensureCRD returns the channel of the installed ClusterNetworkPolicy CRD, applying the module's
// experimental channel when none is installed yet.
func ensureCRD(t *testing.T, c client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	err := c.Get(ctx, types.NamespacedName{Name: crdName}, crd)
	if apierrors.IsNotFound(err) {
		out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
		require.NoError(t, err, "find the network-policy-api module (go mod download)")
		path := filepath.Join(strings.TrimSpace(string(out)), "config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml")
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		crd = &apiextensionsv1.CustomResourceDefinition{}
		require.NoError(t, yaml.Unmarshal(data, crd))
		t.Logf("the lab has no %s CRD: applying the experimental channel from %s", crdName, path)
		require.NoError(t, c.Create(ctx, crd))
		require.Eventually(t, func() bool {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if c.Get(ctx, types.NamespacedName{Name: crdName}, got) != nil {
				return false
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true
				}
			}
			return false
		}, time.Minute, time.Second, "CRD %s not established", crdName)
	} else {
		require.NoError(t, err)
	}
	require.Equal(t, BundleVersion, crd.Annotations["policy.networking.k8s.io/bundle-version"], "the suite needs the CRDs of its own release")
	return crd.Annotations["policy.networking.k8s.io/channel"]
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// setDefault sets a suite flag unless it was passed after -args.
func setDefault(t *testing.T, name, value string) {
	t.Helper()
	if !isSet(name) {
		require.NoError(t, flag.Set(name, value))
	}
}

// version is the implementation version for the report: $STARLAB_VERSION, or git describe of this tree.
func version() string {
	if v := os.Getenv("STARLAB_VERSION"); v != "" {
		return v
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return "dev"
}
