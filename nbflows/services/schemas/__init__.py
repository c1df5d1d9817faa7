"""Wire models of the REST API, one module per kind: `values` (the constrained value types and
JSON checks), `bodies` (request bodies and `parse`), `queries` (query strings), `reply` (the base
of response bodies), one module per main resource whose reply model is both the routes' response
schema and the resource's serialiser (`pools`, `deployments`, `flow_runs`, `logs`, `run_files`),
and `replies` (the other response bodies)."""
