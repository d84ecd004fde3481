package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/invitebot/invitebot/internal/config"
)

// Ensure the deploy/ examples set only variables invitebot reads, probe
// paths it serves, and two replicas.
func TestDeployExamples(t *testing.T) {
	var known []string
	for _, e := range config.Env {
		known = append(known, e[0])
	}
	checkEnv := func(file string, names []string) {
		t.Helper()
		if len(names) == 0 {
			t.Errorf("%s sets no variables", file)
		}
		for _, n := range names {
			if !slices.Contains(known, n) {
				t.Errorf("%s sets %s, which invitebot does not read", file, n)
			}
		}
	}

	// Kubernetes: a Secret, a Deployment, a Service.
	data, err := os.ReadFile("../../deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type object struct {
		Kind       string            `yaml:"kind"`
		StringData map[string]string `yaml:"stringData"`
		Spec       struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					Containers []struct {
						Ports []struct {
							Name string `yaml:"name"`
						} `yaml:"ports"`
						Env []struct {
							Name string `yaml:"name"`
						} `yaml:"env"`
						EnvFrom []struct {
							SecretRef struct {
								Name string `yaml:"name"`
							} `yaml:"secretRef"`
						} `yaml:"envFrom"`
						Readiness probe `yaml:"readinessProbe"`
						Liveness  probe `yaml:"livenessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
			Ports []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	objs := map[string]object{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		objs[o.Kind] = o
	}
	d, sec, svc := objs["Deployment"], objs["Secret"], objs["Service"]
	if d.Spec.Replicas != 2 || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment: %d replicas, %d containers; want 2 and 1", d.Spec.Replicas, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	if len(c.EnvFrom) != 1 || len(sec.StringData) == 0 {
		t.Fatal("the container does not take its secrets from the Secret")
	}
	for k := range sec.StringData {
		names = append(names, k)
	}
	checkEnv("kubernetes.yaml", names)
	if c.Readiness.HTTPGet.Path != "/readyz" || c.Liveness.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %q, liveness %q; want /readyz and /healthz", c.Readiness.HTTPGet.Path, c.Liveness.HTTPGet.Path)
	}
	if len(c.Ports) != 1 || c.Readiness.HTTPGet.Port != c.Ports[0].Name || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != c.Ports[0].Name {
		t.Error("the probes and the Service do not target the container's port")
	}

	// Compose: PostgreSQL and invitebot replicas.
	data, err = os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	replicas := 0
	for name, s := range compose.Services {
		if !strings.HasPrefix(name, "invitebot") {
			continue
		}
		replicas++
		names = names[:0]
		for k := range s.Environment {
			names = append(names, k)
		}
		checkEnv("compose.yaml "+name, names)
		if db := s.Environment["INVITEBOT_DB"]; !strings.HasPrefix(db, "postgres://") {
			t.Errorf("compose.yaml %s: INVITEBOT_DB %q, want a postgres:// URL", name, db)
		}
	}
	if replicas != 2 || !strings.HasPrefix(compose.Services["postgres"].Image, "postgres:") {
		t.Errorf("compose.yaml: %d invitebot replicas and image %q; want 2 and PostgreSQL", replicas, compose.Services["postgres"].Image)
	}

	// The probe paths are served (503 is an answer too: not ready yet).
	h := start(t)
	for _, path := range []string{c.Readiness.HTTPGet.Path, c.Liveness.HTTPGet.Path} {
		resp, err := http.Get(h.player.BotURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET %s = %d, want 200 or 503", path, resp.StatusCode)
		}
	}
}
