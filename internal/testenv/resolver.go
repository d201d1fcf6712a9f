package testenv

import (
	"context"
	"net"
	"net/netip"
)

// MapResolver resolves test host names from a map, so tests of network policies never ask
// DNS (nothing leaves the machine); an unknown name is "no such host".
type MapResolver map[string]string

// LookupNetIP implements the resolver interface of ingest/source's policy.
func (m MapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}
