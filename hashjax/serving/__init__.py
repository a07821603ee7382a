"""A retrieval service: micro-batched queries over an index that can grow
while served (engine, batcher, snapshot), its HTTP API and page (app)."""
