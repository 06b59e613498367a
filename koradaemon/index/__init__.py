"""kora_kernel.db: schema, agency-scoped data layer, chunking, writer and search."""
