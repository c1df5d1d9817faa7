"""Wire models of the REST API, one module per kind: `values` (the constrained value types and
JSON checks), `bodies` (request bodies and `parse`), `queries` (query strings), `replies`
(response bodies) and `serialisers` (store rows as JSON)."""
