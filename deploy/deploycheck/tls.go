package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	yamlv3 "gopkg.in/yaml.v3"
)

// CertManagerObject is the part of cert-manager's cert-manager.io/v1 Issuer and Certificate
// that deploy/k8s/tls/certificates.yaml uses, decoded strictly.
type CertManagerObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		// Issuer
		SelfSigned *struct{} `yaml:"selfSigned"`
		CA         *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"ca"`
		// Certificate
		IsCA        bool     `yaml:"isCA"`
		CommonName  string   `yaml:"commonName"`
		SecretName  string   `yaml:"secretName"`
		Duration    string   `yaml:"duration"`
		RenewBefore string   `yaml:"renewBefore"`
		Usages      []string `yaml:"usages"`
		DNSNames    []string `yaml:"dnsNames"`
		PrivateKey  *struct {
			Algorithm string `yaml:"algorithm"`
			Size      int    `yaml:"size"`
		} `yaml:"privateKey"`
		IssuerRef *struct {
			Name string `yaml:"name"`
			Kind string `yaml:"kind"`
		} `yaml:"issuerRef"`
	} `yaml:"spec"`
}

// CheckCertificates checks deploy/k8s/tls/certificates.yaml: it makes NATSTLSSecret with a
// certificate the clients (nats.urls' host "nats") and the chart's routes (nats-<i>.nats-headless)
// accept, usable as server and as client (routes dial out), issued by an Issuer of the file.
func CheckCertificates(root string) error {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "tls", "certificates.yaml"))
	if err != nil {
		return fmt.Errorf("read certificates: %w", err)
	}
	return CheckCertificatesData(b)
}

// CheckCertificatesData is CheckCertificates on the file's content b.
func CheckCertificatesData(b []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	issuers := map[string]bool{}
	var certs []CertManagerObject
	for {
		var o CertManagerObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("decode certificates: %w", err)
		}
		if o.APIVersion != "cert-manager.io/v1" {
			return fmt.Errorf("certificates: %s %s: apiVersion %s", o.Kind, o.Metadata.Name, o.APIVersion)
		}
		switch o.Kind {
		case "Issuer":
			issuers[o.Metadata.Name] = true
		case "Certificate":
			certs = append(certs, o)
		default:
			return fmt.Errorf("certificates: kind %s", o.Kind)
		}
	}
	var errs []error
	found := false
	for _, c := range certs {
		if c.Spec.IssuerRef == nil || !issuers[c.Spec.IssuerRef.Name] {
			errs = append(errs, fmt.Errorf("certificates: Certificate %s: no Issuer of this file issues it", c.Metadata.Name))
		}
		if c.Spec.SecretName != NATSTLSSecret {
			continue
		}
		found = true
		for _, name := range []string{"nats", "*.nats-headless"} {
			if !slices.Contains(c.Spec.DNSNames, name) {
				errs = append(errs, fmt.Errorf("certificates: %s lacks the name %s", NATSTLSSecret, name))
			}
		}
		for _, u := range []string{"server auth", "client auth"} {
			if !slices.Contains(c.Spec.Usages, u) {
				errs = append(errs, fmt.Errorf("certificates: %s lacks usage %q", NATSTLSSecret, u))
			}
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("certificates: no Certificate makes Secret %s", NATSTLSSecret))
	}
	return errors.Join(errs...)
}
