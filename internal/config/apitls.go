package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

// NodePath is path with "{node}" replaced by node.
func NodePath(path, node string) string { return strings.ReplaceAll(path, "{node}", node) }

// ServerConfig loads node's API certificate and key (api.tls.cert_file, key_file). Errors are Errors with the field
// path and the fix. The key file is held to the secret file's rules (ReadSecretFile).
func (t *APITLS) ServerConfig(node string) (*tls.Config, error) {
	var errs Errors
	certPath, keyPath := NodePath(t.CertFile, node), NodePath(t.KeyFile, node)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		errs.add("api.tls.cert_file", "cannot read %q: %v", certPath, pathErr(err))
	}
	keyPEM, err := ReadSecretFile(keyPath)
	if err != nil {
		errs.add("api.tls.key_file", "%v", err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		errs.add("api.tls.cert_file", "%q and key_file %q are not a PEM certificate and its private key: %v", certPath, keyPath, err)
		return nil, errs
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientConfig is what a client of node's cluster checks the agents' certificates with: api.tls.ca_file, or
// without it node's own certificate (pinned; every node then serves that certificate).
func (t *APITLS) ClientConfig(node string) (*tls.Config, error) {
	var errs Errors
	field, path := "api.tls.ca_file", t.CAFile
	if path == "" {
		field, path = "api.tls.cert_file", NodePath(t.CertFile, node)
	}
	pool, err := LoadCertPool(path)
	if err != nil {
		errs.add(field, "%v", err)
		return nil, errs
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// LoadCertPool reads the PEM certificates in path into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, pathErr(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%q holds no PEM certificate", path)
	}
	return pool, nil
}
