"""musicmap indexer: scan, tags, decode, embed, write to the store, project to a map."""
