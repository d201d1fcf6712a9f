package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/nats-io/nats-server/v2/conf"
	yamlv3 "gopkg.in/yaml.v3"
)

// NATSValues is the part of the official NATS Helm chart's values that
// deploy/helm/nats-values.yaml sets, decoded strictly.
type NATSValues struct {
	Config struct {
		NATS struct {
			TLS HelmTLS `yaml:"tls"`
		} `yaml:"nats"`
		Cluster struct {
			Enabled  bool    `yaml:"enabled"`
			Replicas int     `yaml:"replicas"`
			TLS      HelmTLS `yaml:"tls"`
		} `yaml:"cluster"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled bool   `yaml:"enabled"`
				Dir     string `yaml:"dir"`
				PVC     struct {
					Enabled bool   `yaml:"enabled"`
					Size    string `yaml:"size"`
				} `yaml:"pvc"`
				MaxSize string `yaml:"maxSize"`
			} `yaml:"fileStore"`
			MemoryStore struct {
				Enabled bool   `yaml:"enabled"`
				MaxSize string `yaml:"maxSize"`
			} `yaml:"memoryStore"`
		} `yaml:"jetstream"`
		Monitor struct {
			Enabled bool `yaml:"enabled"`
			Port    int  `yaml:"port"`
		} `yaml:"monitor"`
		// Merge is merged into the chart's nats.conf as it is.
		Merge map[string]any `yaml:"merge"`
	} `yaml:"config"`
	Container struct {
		Env   map[string]any `yaml:"env"`
		Merge map[string]any `yaml:"merge"`
	} `yaml:"container"`
	Service struct {
		Ports map[string]struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"ports"`
	} `yaml:"service"`
	PodTemplate map[string]any `yaml:"podTemplate"`
}

// HelmTLS is the chart's TLS block of one port (config.nats.tls, config.cluster.tls): the
// chart mounts Secret SecretName at Dir (default /etc/nats-certs/<port>) and points cert_file
// and key_file at Cert and Key in it; Merge is merged into the port's tls block as it is.
type HelmTLS struct {
	Enabled    bool           `yaml:"enabled"`
	SecretName string         `yaml:"secretName"`
	Dir        string         `yaml:"dir"`
	Cert       string         `yaml:"cert"`
	Key        string         `yaml:"key"`
	Merge      map[string]any `yaml:"merge"`
}

// reHelmRef is the chart's unquoted-value syntax, here a password variable: << $NAME >>.
var reHelmRef = regexp.MustCompile(`^<< \$(\w+) >>$`)

// CheckNATSValues checks deploy/helm/nats-values.yaml: 3 clustered JetStream servers with
// file storage and monitoring (KEDA reads it); the accounts are deploy/nats/nats-server.conf's,
// equal user for user and permission for permission; every password variable they use comes
// from the lae-nats Secret under the key of the overlays' secretGenerator.
func CheckNATSValues(root string, secretKeys []string) error {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "nats-values.yaml"))
	if err != nil {
		return fmt.Errorf("read helm values: %w", err)
	}
	return CheckNATSValuesData(root, b, secretKeys)
}

// CheckNATSValuesData is CheckNATSValues on the values' content b.
func CheckNATSValuesData(root string, b []byte, secretKeys []string) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var v NATSValues
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("decode helm values: %w", err)
	}
	var errs []error
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		errs = append(errs, errors.New("helm values: want a 3-replica cluster"))
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		errs = append(errs, errors.New("helm values: want JetStream with file storage on a PVC"))
	}
	if !c.Monitor.Enabled || c.Monitor.Port != 8222 || !v.Service.Ports["monitor"].Enabled {
		errs = append(errs, errors.New("helm values: the monitoring port 8222 must be on and in the Service (KEDA's nats-jetstream scaler reads /jsz)"))
	}

	errs = append(errs, checkHelmTLS(c.NATS.TLS, "nats", false), checkHelmTLS(c.Cluster.TLS, "cluster", true))

	// The .conf's accounts, with each $VARIABLE read as the marker the values use for it.
	confText, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats-server.conf"))
	if err != nil {
		return fmt.Errorf("read nats config: %w", err)
	}
	_, vars, err := NATSUsers(root)
	if err != nil {
		return err
	}
	var defs strings.Builder
	for _, name := range vars {
		fmt.Fprintf(&defs, "%s: \"<< $%s >>\"\n", name, name)
	}
	parsed, err := conf.Parse(defs.String() + string(confText))
	if err != nil {
		return fmt.Errorf("parse nats config: %w", err)
	}
	want, got := normalize(parsed["accounts"]), normalize(c.Merge["accounts"])
	if !reflect.DeepEqual(want, got) {
		errs = append(errs, fmt.Errorf("helm values: config.merge.accounts differs from deploy/nats/nats-server.conf's accounts%s", firstDiff(want, got, "")))
	}
	if c.Merge["system_account"] != parsed["system_account"] {
		errs = append(errs, fmt.Errorf("helm values: system_account %v, the .conf has %v", c.Merge["system_account"], parsed["system_account"]))
	}
	// Every password variable must reach the container from the lae-nats Secret.
	refs := map[string]bool{}
	collectRefs(c.Merge["accounts"], refs)
	for name := range refs {
		e, ok := v.Container.Env[name].(map[string]any)
		ref, _ := dig(e, "valueFrom", "secretKeyRef").(map[string]any)
		if !ok || ref == nil {
			errs = append(errs, fmt.Errorf("helm values: container.env lacks %s from a Secret", name))
			continue
		}
		if ref["name"] != "lae-nats" || !contains(secretKeys, fmt.Sprint(ref["key"])) {
			errs = append(errs, fmt.Errorf("helm values: %s from Secret %v key %v; the lae-nats Secret has keys %v", name, ref["name"], ref["key"], secretKeys))
		}
	}
	return errors.Join(errs...)
}

// checkHelmTLS checks one port's TLS: on, from NATSTLSSecret's keys; routes (mutual) verify
// the peer's certificate against the CA in the same Secret, clients present none.
func checkHelmTLS(t HelmTLS, port string, mutual bool) error {
	what := "helm values: config." + port + ".tls"
	keys := externalSecrets[NATSTLSSecret]
	switch {
	case !t.Enabled:
		return fmt.Errorf("%s: TLS must be on (the lae pods connect with tls:// and nats.tls_ca)", what)
	case t.SecretName != NATSTLSSecret:
		return fmt.Errorf("%s: secretName %q, want %q (the Secret whose ca.crt the lae pods mount)", what, t.SecretName, NATSTLSSecret)
	case !contains(keys, t.Cert) || !contains(keys, t.Key):
		return fmt.Errorf("%s: cert %q and key %q must be keys of Secret %s %v", what, t.Cert, t.Key, NATSTLSSecret, keys)
	}
	verify, _ := t.Merge["verify"].(bool)
	if !mutual {
		if verify {
			return fmt.Errorf("%s: verify asks clients for certificates, and the lae roles log in with passwords", what)
		}
		return nil
	}
	dir := t.Dir
	if dir == "" {
		dir = "/etc/nats-certs/" + port // the chart's default
	}
	if !verify || t.Merge["ca_file"] != dir+"/ca.crt" {
		return fmt.Errorf("%s: routes need verify: true and ca_file %s/ca.crt (mutual TLS: only the cluster's nodes join)", what, dir)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func collectRefs(v any, out map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for _, x := range t {
			collectRefs(x, out)
		}
	case []any:
		for _, x := range t {
			collectRefs(x, out)
		}
	case string:
		if m := reHelmRef.FindStringSubmatch(t); m != nil {
			out[m[1]] = true
		}
	}
}

// normalize makes the .conf parser's and YAML's values comparable (JSON types).
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return err.Error()
	}
	return out
}

// firstDiff names the first path where two normalized values differ.
func firstDiff(a, b any, at string) string {
	switch ta := a.(type) {
	case map[string]any:
		tb, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf(" at %s", at)
		}
		for k := range ta {
			if !reflect.DeepEqual(ta[k], tb[k]) {
				return firstDiff(ta[k], tb[k], at+"."+k)
			}
		}
		for k := range tb {
			if _, ok := ta[k]; !ok {
				return fmt.Sprintf(" at %s.%s (only in the values)", at, k)
			}
		}
	case []any:
		tb, ok := b.([]any)
		if !ok || len(ta) != len(tb) {
			return fmt.Sprintf(" at %s (length)", at)
		}
		for i := range ta {
			if !reflect.DeepEqual(ta[i], tb[i]) {
				return firstDiff(ta[i], tb[i], fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
	return fmt.Sprintf(" at %s: %v != %v", at, a, b)
}
