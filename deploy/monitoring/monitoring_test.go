package monitoring

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/lae-screening/lae/internal/ops"
)

// builtin are series Prometheus itself makes for every target.
var builtin = map[string]bool{"up": true}

// registered is every metric family an lae process can expose, by name, with its type
// (COUNTER, GAUGE, HISTOGRAM, ...): the operations endpoint's registry after one series of
// every labelled collector was created (a vector without series is not gathered).
func registered(t *testing.T) map[string]string {
	t.Helper()
	srv := ops.NewServer()
	touchVecs(t, reflect.ValueOf(srv.Metrics).Elem())
	// The middleware's series are created by requests, not by WithLabelValues alone.
	srv.Metrics.HTTPMiddleware("/x", http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	mfs, err := srv.Registry.Gather()
	require.NoError(t, err)
	out := map[string]string{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType().String()
	}
	return out
}

// touchVecs creates one series in every labelled collector among the struct's fields, found
// by reflection so that a vector added later needs no change here: the label count is the
// first one GetMetricWithLabelValues accepts.
func touchVecs(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() || f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		get := f.MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue
		}
		created := false
		for n := 0; n <= 8 && !created; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			out := get.Call(args)
			created = out[1].IsNil()
		}
		require.True(t, created, "no label count fits %s", v.Type().Field(i).Name)
	}
}

var (
	// token is one PromQL token: a string, a Grafana variable, a number or duration, a name,
	// or any other character.
	token = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `|\$\{?\w+\}?|\d[\w.]*|[A-Za-z_:][\w:]*|\S`)
	// notMetric are the PromQL words that are no metric: aggregation operators, set and
	// comparison keywords and modifiers.
	notMetric = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
	}
	// labelList are the words followed by a parenthesised list of label names.
	labelList = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
)

// metricNames is the metric names a PromQL expression selects: names that are not a
// function (followed by "("), a keyword, a label (inside {...} or a by/on list) or inside a
// string, a range or a subquery ([...]).
func metricNames(expr string) []string {
	toks := token.FindAllString(expr, -1)
	var names []string
	depth := map[string]int{}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		switch tok {
		case "{", "[":
			depth[tok]++
			continue
		case "}":
			depth["{"]--
			continue
		case "]":
			depth["["]--
			continue
		}
		if depth["{"] > 0 || depth["["] > 0 {
			continue
		}
		if labelList[tok] && i+1 < len(toks) && toks[i+1] == "(" {
			for i < len(toks) && toks[i] != ")" {
				i++
			}
			continue
		}
		if !nameStart(tok[0]) || notMetric[strings.ToLower(tok)] {
			continue
		}
		if i+1 < len(toks) && toks[i+1] == "(" {
			continue // a function
		}
		names = append(names, tok)
	}
	return names
}

// nameStart reports whether c may start a metric name (numbers, strings, variables and
// punctuation may not).
func nameStart(c byte) bool {
	return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

// unknown is the names of expr that no lae collector (nor Prometheus) provides: a
// histogram's or summary's _bucket, _sum and _count series count as their family's.
func unknown(expr string, families map[string]string) []string {
	var bad []string
	for _, n := range metricNames(expr) {
		if _, ok := families[n]; ok || builtin[n] {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok {
				typ := families[base]
				found = found || typ == "HISTOGRAM" || (typ == "SUMMARY" && suffix != "_bucket")
			}
		}
		if !found {
			bad = append(bad, n)
		}
	}
	return bad
}

// rulesFile is a Prometheus rule file; unknown keys are errors (a misspelt "for" would
// otherwise be an alert that fires at once).
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertExprs reads the alert rules and returns each alert's expression by alert name.
func alertExprs(t *testing.T, b []byte) map[string]string {
	t.Helper()
	var f rulesFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&f))
	out := map[string]string{}
	for _, g := range f.Groups {
		require.NotEmpty(t, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert)
			require.NotContains(t, out, r.Alert, "alert names are unique")
			require.NotEmpty(t, r.Expr, r.Alert)
			_, err := time.ParseDuration(r.For)
			require.NoError(t, err, "%s: for", r.Alert)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboardExprs returns every query of the dashboard by "panel title/refId", checking the
// panel ids are unique and every target has a refId.
func dashboardExprs(t *testing.T, b []byte) map[string]string {
	t.Helper()
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.UID)
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		require.False(t, ids[p.ID], "panel id %d is unique", p.ID)
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.RefID, p.Title)
			out[p.Title+"/"+tg.RefID] = tg.Expr
		}
	}
	return out
}

// checkExprs is the names of exprs that no collector provides, and the exprs that select
// no metric at all (an extraction that found nothing checks nothing).
func checkExprs(exprs map[string]string, families map[string]string) []string {
	var bad []string
	for where, e := range exprs {
		if len(metricNames(e)) == 0 {
			bad = append(bad, where+": selects no metric")
		}
		for _, n := range unknown(e, families) {
			bad = append(bad, fmt.Sprintf("%s: %s", where, n))
		}
	}
	slices.Sort(bad)
	return bad
}

// selected is every metric name the expressions select.
func selected(exprs map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricNames(e) {
			out[n] = true
		}
	}
	return out
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

// Every metric the dashboard and the alerts select exists, and each shows what an operator
// needs (issue 13: verdicts, time to verdict, consumer lag, stage costs, errors, live lag,
// HTTP, readiness, build info).
func TestFilesReferenceRegisteredMetrics(t *testing.T) {
	families := registered(t)
	tests := []struct {
		file  string
		exprs func(*testing.T, []byte) map[string]string
		must  []string
	}{
		{"grafana-dashboard.json", dashboardExprs, []string{"lae_verdicts_total", "lae_time_to_verdict_seconds_bucket",
			"lae_consumer_pending", "lae_ingest_decode_seconds_bucket", "lae_ingest_face_detect_seconds_bucket",
			"lae_inference_seconds_bucket", "lae_errors_total", "lae_live_lag_seconds", "lae_http_requests_total",
			"lae_http_request_seconds_bucket", "lae_build_info", "lae_ready"}},
		{"alerts.yaml", alertExprs, []string{"lae_consumer_pending", "lae_verdicts_total", "lae_errors_total",
			"lae_ready", "up", "lae_build_info", "lae_live_lag_seconds", "lae_http_requests_total"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			exprs := tt.exprs(t, readFile(t, tt.file))
			require.NotEmpty(t, exprs)
			require.Empty(t, checkExprs(exprs, families))
			sel := selected(exprs)
			for _, m := range tt.must {
				require.True(t, sel[m], "%s shows %s", tt.file, m)
			}
		})
	}
}

// The check catches a misspelt or unregistered metric, and only that: functions, keywords,
// labels, strings, ranges and Grafana variables are not metrics.
func TestCheckCatchesMisspelledMetrics(t *testing.T) {
	families := registered(t)
	tests := []struct {
		name, expr string
		names      []string
		unknown    []string
	}{
		{"histogram quantile", `histogram_quantile(0.95, sum by (le) (rate(lae_time_to_verdict_seconds_bucket[5m])))`,
			[]string{"lae_time_to_verdict_seconds_bucket"}, nil},
		{"misspelt histogram", `histogram_quantile(0.95, sum by (le) (rate(lae_time_to_verdict_second_bucket[5m])))`,
			[]string{"lae_time_to_verdict_second_bucket"}, []string{"lae_time_to_verdict_second_bucket"}},
		{"bucket of a counter", `rate(lae_verdicts_total_bucket[5m])`, []string{"lae_verdicts_total_bucket"}, []string{"lae_verdicts_total_bucket"}},
		{"labels and strings", `sum by (stage, kind) (rate(lae_errors_total{stage="lae_nothing",kind=~'x|y'}[$__rate_interval]))`,
			[]string{"lae_errors_total"}, nil},
		{"misspelt counter", `sum by (verdict) (rate(lae_verdict_total[5m]))`, []string{"lae_verdict_total"}, []string{"lae_verdict_total"}},
		{"join and offset", `up == 0 and on (job, instance) group_left (version) max_over_time(lae_build_info[1h] offset 5m)`,
			[]string{"up", "lae_build_info"}, nil},
		{"subquery and vector", `(sum(increase(lae_verdicts_total[15m:1m])) or vector(0)) == 0 and on () lae_consumer_pendng > 0`,
			[]string{"lae_verdicts_total", "lae_consumer_pendng"}, []string{"lae_consumer_pendng"}},
		{"sum of a histogram", `rate(lae_batch_size_sum[5m]) / rate(lae_batch_size_count[5m])`, []string{"lae_batch_size_sum", "lae_batch_size_count"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.names, metricNames(tt.expr))
			require.Equal(t, tt.unknown, unknown(tt.expr, families))
		})
	}
}

// One misspelt metric in either file fails the file check (the first occurrence is mutated).
func TestMutatedFilesFail(t *testing.T) {
	families := registered(t)
	tests := []struct {
		file, from, to string
		exprs          func(*testing.T, []byte) map[string]string
	}{
		{"grafana-dashboard.json", "lae_ingest_decode_seconds_bucket", "lae_ingest_decoding_seconds_bucket", dashboardExprs},
		{"grafana-dashboard.json", "lae_live_lag_seconds", "lae_live_lag", dashboardExprs},
		{"alerts.yaml", "lae_ready ==", "lae_readyz ==", alertExprs},
		{"alerts.yaml", "lae_consumer_ack_pending", "lae_consumer_acks_pending", alertExprs},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.to, func(t *testing.T) {
			b := string(readFile(t, tt.file))
			require.Contains(t, b, tt.from)
			bad := checkExprs(tt.exprs(t, []byte(strings.Replace(b, tt.from, tt.to, 1))), families)
			require.Len(t, bad, 1)
			require.Contains(t, bad[0], strings.TrimSuffix(tt.to, " =="))
		})
	}
}

// registered sees the families of every kind, so an unknown name is not a gap in it.
func TestRegisteredFamilies(t *testing.T) {
	families := registered(t)
	for name, typ := range map[string]string{
		"lae_verdicts_total": "COUNTER", "lae_live_lag_seconds": "GAUGE", "lae_time_to_verdict_seconds": "HISTOGRAM",
		"lae_http_request_seconds": "HISTOGRAM", "lae_build_info": "GAUGE", "lae_ready": "GAUGE", "process_resident_memory_bytes": "GAUGE",
	} {
		require.Equal(t, typ, families[name], name)
	}
}
