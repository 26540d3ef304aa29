"""Ranking: merge the candidates of every source, describe them with features, fuse them into one order."""
