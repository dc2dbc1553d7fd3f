"""``chiffon-memory``: chat history in PostgreSQL, scoped vector memory in ChromaDB, local embeddings."""
