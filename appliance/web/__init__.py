"""HTTP layer: Litestar app pieces (request parsing, schemas, errors, auth)."""
