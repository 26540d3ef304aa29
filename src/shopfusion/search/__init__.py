"""Product search: query understanding, lexical + dense retrieval, learned ranking, filters and facets."""
