"""Running experiments and reading their results: the method registry, the output layout, the
job engine behind scripts/reproduce, run identity, the report and the figures."""
