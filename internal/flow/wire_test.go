package flow

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireCases are flows with every optional part set and unset, odd values among them.
func wireCases() map[string]*Flow {
	full := sample()
	full.SourceService = &Service{Name: "front", Namespace: "stars"}
	full.IsReply, full.Packets, full.Bytes = true, 1<<40, 1<<62
	full.L4.Flags = &TCPFlags{FIN: true, SYN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true}
	full.AllowedBy = []Policy{{Kind: PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow", Tier: TierAdmin, Rule: "r1", Action: ActionAccept}}
	bare := &Flow{}
	local := sample()
	local.Time = time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	local.UUID = "8a3f2c10-0001-4e1b-9c7d-000000000001"
	return map[string]*Flow{
		"sample":       sample(),
		"full":         full,
		"zero":         bare,
		"canonical id": local,
		"upper uuid":   func() *Flow { f := sample(); f.UUID = "8A3F2C10-0001-4E1B-9C7D-000000000001"; return f }(),
		"long label": func() *Flow {
			f := sample()
			f.Source.Labels = []string{string(bytes.Repeat([]byte("x"), 1000))}
			return f
		}(),
		"before 1970": func() *Flow { f := sample(); f.Time = time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC); return f }(),
		"year 1":      func() *Flow { f := sample(); f.Time = time.Time{}.Add(time.Nanosecond); return f }(),
		"year 9999": func() *Flow {
			f := sample()
			f.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
			return f
		}(),
		"empty labels": func() *Flow {
			f := sample()
			f.Destination.Labels = nil
			f.Destination.Workload = &Workload{}
			return f
		}(),
	}
}

func TestWireRoundTrip(t *testing.T) {
	for name, f := range wireCases() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := NewWireEncoder(&buf)
			// Twice: the second record reads its strings from the dictionary.
			require.NoError(t, enc.Encode(f))
			require.NoError(t, enc.Encode(f))
			dec := NewWireDecoder(&buf)
			for range 2 {
				got, err := dec.Decode()
				require.NoError(t, err)
				assert.Equal(t, f, got)
			}
			_, err := dec.Decode()
			assert.ErrorIs(t, err, io.EOF)
		})
	}
}

// More distinct strings than the dictionary holds: it starts again, and every flow still reads back.
func TestWireDictionaryResets(t *testing.T) {
	var buf bytes.Buffer
	enc := NewWireEncoder(&buf)
	n := wireDictMax/4 + 100
	for i := range n {
		f := sample()
		f.Source.PodName, f.Destination.PodName = fmt.Sprintf("src-%d", i), fmt.Sprintf("dst-%d", i)
		f.Source.Labels = []string{fmt.Sprintf("a=%d", i), fmt.Sprintf("b=%d", i)}
		require.NoError(t, enc.Encode(f))
	}
	dec := NewWireDecoder(&buf)
	for i := range n {
		got, err := dec.Decode()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("src-%d", i), got.Source.PodName)
		require.Equal(t, []string{fmt.Sprintf("a=%d", i), fmt.Sprintf("b=%d", i)}, got.Source.Labels)
		require.LessOrEqual(t, len(dec.dict), wireDictMax)
	}
	_, err := dec.Decode()
	assert.ErrorIs(t, err, io.EOF)
}

func TestWireDecodeErrors(t *testing.T) {
	var good bytes.Buffer
	require.NoError(t, NewWireEncoder(&good).Encode(sample()))
	rec := good.Bytes()
	cases := map[string]struct {
		in   []byte
		want string
	}{
		"not wire":       {[]byte(`{"uuid":"x"}` + "\n"), "not a " + WireContentType + " stream"},
		"short header":   {[]byte("SL"), "header"},
		"cut record":     {rec[:len(rec)-3], "flow wire record 1"},
		"zero length":    {append([]byte(wireMagic), 0), "length 0 is outside"},
		"huge length":    {append([]byte(wireMagic), 0xff, 0xff, 0xff, 0x7f), "is outside"},
		"bad reference":  {append([]byte(wireMagic), 3, wireZeroTime, 2, 9<<2), "string reference"},
		"trailing bytes": {withRecord(rec, func(b []byte) []byte { return append(b, 0) }), "after the last field"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewWireDecoder(bytes.NewReader(c.in)).Decode()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// withRecord returns the one-record stream rec with its body changed by edit (length rewritten).
func withRecord(rec []byte, edit func([]byte) []byte) []byte {
	body := edit(append([]byte(nil), rec[len(wireMagic)+3:]...))
	n := len(body)
	out := append([]byte(wireMagic), byte(n)|0x80, byte(n>>7)|0x80, byte(n>>14))
	return append(out, body...)
}

func TestHandlerServesWireWhenAsked(t *testing.T) {
	s := NewStore(100)
	want := wireCases()["full"]
	s.Add(want)
	srv := httptest.NewServer(Handler(s, nil))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/json;q=0.5, "+WireContentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, WireContentType, resp.Header.Get("Content-Type"))
	dec := NewStreamDecoder(resp.Header.Get("Content-Type"), resp.Body)
	got, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Without the Accept header: NDJSON, as curl users get it.
	resp2, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp2.Body.Close()
	assert.Equal(t, ContentType, resp2.Header.Get("Content-Type"))
	_, err = NewStreamDecoder(resp2.Header.Get("Content-Type"), resp2.Body).Decode()
	require.NoError(t, err)
}
