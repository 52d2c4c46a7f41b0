package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
)

// apiFlags are shared by the commands that talk to an agent.
type apiFlags struct {
	url, cfgPath, node, tokenFile string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "api", "", "agent API URL (default: this host's agent from --config, else http://127.0.0.1:7480)")
	cmd.Flags().StringVarP(&f.cfgPath, "config", "c", defaultConfig, "cluster config file (to find the local agent's API)")
	cmd.Flags().StringVar(&f.node, "node", "", "node whose agent to ask (default: this host)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the API token (or set BATON_API_TOKEN)")
}

func (f *apiFlags) base() string {
	if f.url != "" {
		u := strings.TrimRight(f.url, "/")
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		return u
	}
	if cfg, err := config.Load(f.cfgPath); err == nil {
		if n, err := cfg.LocalNode(f.node); err == nil {
			return "http://" + n.API
		}
	}
	return "http://127.0.0.1:7480"
}

func (f *apiFlags) token() (string, error) {
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv("BATON_API_TOKEN"), nil
}

// get fetches path from the agent into v.
func (f *apiFlags) get(path string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	url := f.base() + path
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w (is `baton agent` running? use --api)", f.base(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", url, e.Error)
		}
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.Unmarshal(body, v)
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
	url := f.base() + path
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w (is `baton agent` running? use --api)", f.base(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized && tok == "" {
				return fmt.Errorf("%s (set --token-file or BATON_API_TOKEN)", e.Error)
			}
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.Unmarshal(data, v)
}
