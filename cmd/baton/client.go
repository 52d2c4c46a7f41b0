package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/api"
	"github.com/baton-ha/baton/internal/config"
)

// apiFlags are shared by the commands that talk to an agent.
type apiFlags struct {
	url, cfgPath, node, tokenFile, caFile string
	cmd                                   *cobra.Command
}

func (f *apiFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.Flags().StringVar(&f.url, "api", "", "agent API URL (default: this host's agent in --config, else http://127.0.0.1:7480)")
	cmd.Flags().StringVarP(&f.cfgPath, "config", "c", defaultConfig, "cluster config file (finds the agent's API and api.token_file)")
	cmd.Flags().StringVar(&f.node, "node", "", "node whose agent to ask (default: the node named like this host)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the API token (default: BATON_API_TOKEN, else api.token_file of --config)")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "PEM CA bundle (or pinned certificate) to check an https agent with (default: api.tls of --config)")
}

// config loads --config; ok is false when it was not given and the default
// file does not exist (then the CLI falls back to the local default API).
func (f *apiFlags) config() (cfg *config.Config, ok bool, err error) {
	explicit := f.cmd != nil && f.cmd.Flags().Changed("config")
	if _, statErr := os.Stat(f.cfgPath); statErr != nil && !explicit {
		return nil, false, nil
	}
	cfg, err = config.Load(f.cfgPath)
	if err != nil {
		return nil, false, fmt.Errorf("--config %s: %w", f.cfgPath, err)
	}
	return cfg, true, nil
}

// base is the agent API to ask: --api, else the --node (or this host's
// node) of --config, else the default local API when there is no config.
func (f *apiFlags) base() (string, error) {
	if f.url != "" {
		u := strings.TrimRight(f.url, "/")
		if !strings.Contains(u, "://") {
			scheme := "http"
			if cfg, ok, err := f.config(); f.caFile != "" || (err == nil && ok && cfg.API.TLS != nil) {
				scheme = "https" // --ca-file or api.tls: the agents serve HTTPS
			}
			u = scheme + "://" + u
		}
		return u, nil
	}
	cfg, ok, err := f.config()
	if err != nil {
		return "", err
	}
	if !ok {
		return "http://127.0.0.1:7480", nil
	}
	n, err := cfg.LocalNode(f.node)
	if err != nil {
		return "", fmt.Errorf("which agent to ask: %w (in %s), or pass --api URL", err, f.cfgPath)
	}
	if cfg.API.TLS != nil {
		return "https://" + n.API, nil // the agents serve HTTPS only
	}
	return "http://" + n.API, nil
}

// client is the HTTP client for the agent: with --ca-file, or the config's
// api.tls, https checks the agent's certificate against that CA (or pinned
// certificate); otherwise the system's roots.
func (f *apiFlags) client(timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch cfg, ok, err := f.config(); {
	case f.caFile != "":
		pool, err := config.LoadCertPool(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	case err == nil && ok && cfg.API.TLS != nil:
		node := cfg.Nodes[0].Name // any node's certificate will do as the pin: they all serve the same one
		if n, err := cfg.LocalNode(f.node); err == nil {
			node = n.Name
		}
		tc, err := cfg.API.TLS.ClientConfig(node)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", f.cfgPath, err)
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// token is the API token: --token-file, else BATON_API_TOKEN, else the
// config's api.token_file (or api.token).
func (f *apiFlags) token() (string, error) {
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("BATON_API_TOKEN"); t != "" {
		return t, nil
	}
	if cfg, ok, err := f.config(); err == nil && ok {
		return cfg.APIToken, nil
	}
	return "", nil
}

// apiError is an error answer of the agent's API; its status decides the
// exit code: 4xx is a refusal (exitRefused), 5xx a failure (exitFailed, e.g.
// 503 without a quorum leader: worth retrying).
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func (e *apiError) exitCode() int {
	if e.status >= 400 && e.status < 500 {
		return exitRefused
	}
	return exitFailed
}

func unreachable(base string, err error) error {
	return fmt.Errorf("cannot reach the agent at %s: %w (is `baton agent` running there? pass --api, or --node with --config)", base, err)
}

// readPath is path for a consistent read (the default: the agent answers as
// the quorum leader would), or with ?stale=true for its own replica.
func readPath(path string, stale bool) string {
	if stale {
		return path + "?stale=true"
	}
	return path
}

// get fetches path from the agent into v.
func (f *apiFlags) get(path string, v any) error {
	base, err := f.base()
	if err != nil {
		return err
	}
	// Reads need no token, but with it the agent shows the check details it
	// hides from others (credentials in a check's URL, an exec check's output).
	tok, err := f.token()
	if err != nil {
		return err
	}
	c, err := f.client(5 * time.Second)
	if err != nil {
		return err
	}
	url := base + path
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set(api.VersionHeader, strconv.Itoa(api.Version))
	resp, err := c.Do(req)
	if err != nil {
		return unreachable(base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &apiError{resp.StatusCode, fmt.Sprintf("%s: %s", url, e.Error)}
		}
		return &apiError{resp.StatusCode, fmt.Sprintf("%s: %s", url, resp.Status)}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: not the answer of a baton agent: %w", url, err)
	}
	return nil
}

// post sends body as JSON to path with the API token and decodes the answer into v.
func (f *apiFlags) post(path string, body, v any) error {
	tok, err := f.token()
	if err != nil {
		return err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	base, err := f.base()
	if err != nil {
		return err
	}
	url := base + path
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.VersionHeader, strconv.Itoa(api.Version))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c, err := f.client(30 * time.Second)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return unreachable(base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized && tok == "" && !strings.Contains(e.Error, "BATON_API_TOKEN") {
				return &apiError{resp.StatusCode, e.Error + " (set --token-file, BATON_API_TOKEN or api.token_file in --config)"}
			}
			return &apiError{resp.StatusCode, e.Error}
		}
		return &apiError{resp.StatusCode, fmt.Sprintf("%s: %s", url, resp.Status)}
	}
	return json.Unmarshal(data, v)
}
