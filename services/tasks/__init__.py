"""The tasks service: the seed's workload (task listing and creation), with an outbox."""
