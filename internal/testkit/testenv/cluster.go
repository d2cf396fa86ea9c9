package testenv

import (
	"strings"
	"testing"
)

// RedisCluster returns the addresses in APIKIT_TEST_REDIS_CLUSTER, a
// comma-separated list of a Redis Cluster's nodes, for example
// 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 (.ci/run starts one).
func RedisCluster(tb testing.TB) []string {
	tb.Helper()
	v := lookup(tb, "APIKIT_TEST_REDIS_CLUSTER", "comma-separated Redis Cluster node addresses")
	return strings.Split(v, ",")
}
