// Package monitoring holds the Grafana dashboard (grafana-dashboard.json) and the Prometheus
// alert rules (alerts.yaml) of lae, and no code: its test checks that every metric they
// select is one lae registers, so a renamed metric or a typo fails `go test` instead of
// leaving an operator an empty panel or an alert that never fires.
package monitoring
