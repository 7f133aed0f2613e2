"""What proves the cluster: benchmarks (bench*), chaos scenarios and the nemesis (chaos/), and the load
generator (loadgen). Each brings up its own scratch cluster or uses a named one. May import everything but
cli/ and dashboard/."""
