package deploycheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/conf"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// LaeStreams are the JetStream streams `lae provision` creates (schemas/v1): the streams, the
// verdicts KV bucket and the object stores. Every lae process checks at start that all of
// them exist (laev1.Provisioned), so every user of the NATS config needs STREAM.INFO on each.
func LaeStreams() []string {
	names := []string{"KV_" + laev1.BucketVerdicts, "OBJ_" + laev1.BucketEvidence, "OBJ_" + laev1.BucketUploads}
	for _, cfg := range laev1.StreamConfigs(laev1.Retention{}) {
		names = append(names, cfg.Name)
	}
	return names
}

// natsUser is one user of the LAE account as the nats-server config parser reads it.
type natsUser struct {
	name, password string
	pubAllow       []string
	restricted     bool // has a permissions block (admin has none: it provisions)
}

// CheckNATSConf checks deploy/nats/nats-server.conf: every lae command that logs in (lae
// provision, the roles, lae serve, and the client commands) has its user in the LAE account,
// with the password variable LAE_<USER>_PASSWORD that compose and the Helm values fill;
// every user with permissions may call $JS.API.INFO and STREAM.INFO on each of LaeStreams.
func CheckNATSConf(root string) error {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats-server.conf"))
	if err != nil {
		return fmt.Errorf("read nats config: %w", err)
	}
	return CheckNATSConfData(root, b)
}

// CheckNATSConfData is CheckNATSConf on the config's content b.
func CheckNATSConfData(root string, b []byte) error {
	users, err := parseNATSUsers(root, b)
	if err != nil {
		return err
	}
	var errs []error
	want := slices.Sorted(func(yield func(string) bool) {
		for _, u := range roleUsers {
			if !yield(u) {
				return
			}
		}
	})
	want = slices.Compact(append(want, "client"))
	for _, name := range want {
		u, ok := users[name]
		if !ok {
			errs = append(errs, fmt.Errorf("nats config: no user %q in account %s", name, NATSAccount))
			continue
		}
		if pw := "<< $LAE_" + strings.ToUpper(name) + "_PASSWORD >>"; u.password != pw {
			errs = append(errs, fmt.Errorf("nats config: user %s's password is %q, want $LAE_%s_PASSWORD", name, u.password, strings.ToUpper(name)))
		}
	}
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		u := users[name]
		if !u.restricted {
			continue
		}
		for _, s := range append([]string{"INFO"}, prefixAll("STREAM.INFO.", LaeStreams())...) {
			if !slices.Contains(u.pubAllow, "$JS.API."+s) {
				errs = append(errs, fmt.Errorf("nats config: user %s may not publish $JS.API.%s (every lae process looks up every lae stream at start)", name, s))
			}
		}
	}
	return errors.Join(errs...)
}

func prefixAll(prefix string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = prefix + s
	}
	return out
}

// parseNATSUsers reads the users of account NATSAccount from the config text b with the
// nats-server parser (each password variable read as the Helm values' marker for it).
func parseNATSUsers(root string, b []byte) (map[string]natsUser, error) {
	_, vars, err := NATSUsers(root)
	if err != nil {
		return nil, err
	}
	var defs strings.Builder
	for _, name := range vars {
		fmt.Fprintf(&defs, "%s: \"<< $%s >>\"\n", name, name)
	}
	parsed, err := conf.Parse(defs.String() + string(b))
	if err != nil {
		return nil, fmt.Errorf("parse nats config: %w", err)
	}
	acc, _ := dig(parsed, "accounts", NATSAccount).(map[string]any)
	list, _ := acc["users"].([]any)
	if len(list) == 0 {
		return nil, fmt.Errorf("nats config: account %s has no users", NATSAccount)
	}
	users := map[string]natsUser{}
	for _, x := range list {
		m, _ := x.(map[string]any)
		u := natsUser{name: fmt.Sprint(m["user"]), password: fmt.Sprint(m["password"])}
		if perms, ok := m["permissions"].(map[string]any); ok {
			u.restricted = true
			u.pubAllow = stringList(dig(perms, "publish", "allow"))
		}
		users[u.name] = u
	}
	return users, nil
}

// stringList is a parsed list of strings (nil for anything else).
func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
