// Package bench holds end-to-end benchmarks that cross package boundaries.
// BenchmarkDelivery (delivery_test.go) measures the node's "components" boot
// step against the model in the project's delivery-limits notes; see
// README.md. The package has no non-test code beyond this comment.
package bench
