package metrics

import "github.com/prometheus/client_golang/prometheus"

// BuildInfo registers invitebot_build_info: a gauge of 1 whose labels say
// which build is running (Prometheus's usual way to expose versions).
func (m *Registry) BuildInfo(version, revision, goVersion string) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "invitebot_build_info",
		Help: "Always 1; the labels name the running build: module version, VCS revision and Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(version, revision, goVersion).Set(1)
	m.reg.MustRegister(g)
}
