package conformance

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the run as JUnit XML: one testcase per case, the truth tables as system-out,
// the wrong cells as the failure.
func WriteJUnit(w io.Writer, r *Report) error {
	suite := junitSuite{Name: "starlab-conformance", Tests: len(r.Cases), Failures: r.Failed, Time: secs(r.Duration.Seconds())}
	for _, c := range r.Cases {
		var tables bytes.Buffer
		WriteTruthTables(&tables, c)
		jc := junitCase{Name: c.Name, Classname: "conformance." + firstTag(c), Time: secs(c.Duration.Seconds()), SystemOut: tables.String()}
		if !c.Passed {
			var lines []string
			wrong := 0
			if c.Error != "" {
				lines = append(lines, "error: "+c.Error)
			}
			for _, s := range c.Steps {
				for _, cell := range s.Cells {
					if cell.Wrong {
						wrong++
						lines = append(lines, fmt.Sprintf("step %q: %s %s -> %s %s/%d: %s", s.Name, cell.Mode, cell.From, cell.To, cell.Protocol, cell.Port, strings.Join(cell.Why, "; ")))
					}
				}
			}
			msg := fmt.Sprintf("%d wrong cells", wrong)
			if c.Error != "" {
				msg = c.Error
			}
			jc.Failure = &junitFailure{Message: msg, Type: "reachability", Text: strings.Join(lines, "\n")}
		}
		suite.Cases = append(suite.Cases, jc)
	}
	doc := junitSuites{Name: "starlab conformance", Tests: suite.Tests, Failures: suite.Failures, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write JUnit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write JUnit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(s float64) string { return fmt.Sprintf("%.3f", s) }

func firstTag(c CaseResult) string {
	if name, _, ok := strings.Cut(c.Name, "/"); ok {
		return name
	}
	return c.Name
}
