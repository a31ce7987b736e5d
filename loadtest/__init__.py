"""Load test of the reference workload (locust) and its runner."""
