"""A retrieval service: micro-batched queries over an index that can grow while served (engine), its HTTP API and web page (app)."""
