package process

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/quorum"
	"github.com/baton-ha/baton/internal/testkit"
)

// writeAPICerts writes a CA (ca.crt) and one certificate for every node's
// address signed by it (api.crt, api.key) into dir.
func writeAPICerts(t *testing.T, dir string, addrs map[string]string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "baton test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "baton api"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, a := range addrs {
		leaf.IPAddresses = append(leaf.IPAddresses, net.ParseIP(a))
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, block := range map[string]*pem.Block{"ca.crt": {Type: "CERTIFICATE", Bytes: caDER},
		"api.crt": {Type: "CERTIFICATE", Bytes: der}, "api.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAPIOverTLS: with api.tls the agents serve HTTPS only (a plain HTTP
// request is refused), the CLI talks to them over https checking their
// certificates against the CA of the config, a mutation sent to a follower
// is forwarded to the quorum leader over https, and a consistent read on
// another node (which asks the leader over https) shows it.
func TestAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1",
		APIExtra: ", tls: {cert_file: api.crt, key_file: api.key, ca_file: ca.crt}"})
	if err != nil {
		t.Fatal(err)
	}
	writeAPICerts(t, dir, c.Addrs)
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for n := range c.Addrs {
				b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
				t.Logf("=== %s.log (tail) ===\n%s", n, b[max(0, len(b)-3000):])
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	cli := func(node string, args ...string) (string, error) {
		cmd := exec.Command(c.Bin, append(args, "--config", c.ConfigPath, "--node", node)...)
		cmd.Env = append(os.Environ(), "BATON_API_TOKEN="+proctest.Token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var st core.Status
	testkit.WaitForState(t, liveness, "n1 to own web, seen over https", func() (bool, string) {
		out, err := cli("w1", "status", "--json")
		if err != nil {
			return false, out
		}
		st = core.Status{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, out
		}
		return len(st.Groups) == 1 && st.Groups[0].Owner == "n1" && st.Leader != "", out
	})

	// Plain HTTP is refused.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.APIs["n1"] + "/v1/status")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") || strings.Contains(string(body), `"groups"`) {
		t.Fatalf("plain HTTP to a TLS API: %d %q, want 400 and no status", resp.StatusCode, body)
	}
	// A client that does not trust the agents' CA is refused too.
	other := t.TempDir()
	writeAPICerts(t, other, c.Addrs)
	if out, err := exec.Command(c.Bin, "status", "--api", "https://"+c.APIs["n1"], "--ca-file", filepath.Join(other, "ca.crt")).CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Fatalf("status with another CA: %v\n%s", err, out)
	}
	if out, err := exec.Command(c.Bin, "status", "--api", "https://"+c.APIs["n1"], "--ca-file", filepath.Join(dir, "ca.crt")).CombinedOutput(); err != nil || !strings.Contains(string(out), "web") {
		t.Fatalf("status with --ca-file: %v\n%s", err, out)
	}

	// A switchover asked on a node that does not lead the quorum is forwarded over https.
	asked, reader := "n2", "n1"
	switch st.Leader {
	case "n2":
		asked, reader = "n1", "w1"
	case "n1":
		reader = "w1"
	}
	out, err := cli(asked, "switchover", "web", "--to", "n2")
	if err != nil || !strings.Contains(out, "n1 → n2 (epoch 2)") {
		t.Fatalf("switchover asked on %s (leader %s): %v\n%s", asked, st.Leader, err, out)
	}
	out, err = cli(reader, "history", "--json")
	var ev []quorum.Event
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || !slices.ContainsFunc(ev, func(e quorum.Event) bool { return e.Epoch == 2 && e.To == "n2" }) {
		t.Fatalf("history on %s right after the switchover: %v\n%s", reader, err, out)
	}
}
